//! Step Functions: each region's state machine is the shipped
//! `deploy/statemachines/failover.asl.json` (rendered with
//! `aws::sfn::render_definition`), run by a small interpreter of the part of
//! the Amazon States Language it uses, behind the daemon's `Workflows` port.
//!
//! What is interpreted, as AWS documents it:
//! - `Task` states whose `Resource` is an `aws-sdk:dynamodb` integration
//!   (`updateItem`, `putItem`, `putItem.waitForTaskToken`), with
//!   `Parameters` (`.$` keys: JSONPath `$.a.b`, the context object
//!   `$$.Task.Token`, `$$.Execution.Id`, `$$.State.EnteredTime`, and the
//!   intrinsic `States.Format`), `ResultPath` (absent, `null`, `$.x`),
//!   `Retry` (`ErrorEquals`, `IntervalSeconds`, `BackoffRate`,
//!   `MaxAttempts`, `MaxDelaySeconds`, `JitterStrategy` FULL: uniform in
//!   `[0, interval]`), `Catch` (`ErrorEquals`, `ResultPath`, `Next`),
//!   `HeartbeatSeconds` (`States.HeartbeatTimeout`) and `TimeoutSeconds`
//!   (`States.Timeout`). Each attempt of a callback task has a new token.
//! - `Choice` (`BooleanEquals`, `StringEquals`, `NumericEquals`,
//!   `IsPresent`; `Default`), `Pass`, `Succeed`, `Fail`.
//! - Error names: `States.ALL` matches every error but `States.Runtime`;
//!   `States.TaskFailed` every task error but timeouts; `States.Timeout`
//!   also matches `States.HeartbeatTimeout`. DynamoDB errors are
//!   `DynamoDb.<code>`.
//! - The control record's `updateItem`s are mapped to the `RecordWrite`
//!   they are (by `:step`), and only when their condition and update
//!   expressions are exactly the ones `core::record` states: a changed
//!   expression in the ASL stops the simulation with a message, rather than
//!   run a write nobody modelled.
//!
//! Anything else (another state type, field or operator) panics with the
//! state's name: the interpreter must grow with the definition, never
//! guess. Executions: a name is reserved for ever (AWS keeps closed names
//! for 90 days, longer than any simulation); starting a running execution
//! with the same input returns it, anything else is
//! `ExecutionAlreadyExists` (the port's `Started::Existing`). A callback
//! for a closed task is `TaskTimedOut`, for an unknown token `InvalidToken`
//! (the port's `Callback::AlreadyClosed`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use failoverd::aws::control_table::{parse_time, rfc3339};
use failoverd::core::plan::ExecutionStatus;
use failoverd::core::record::RecordWrite;
use failoverd::ports::workflows::{
    Callback, Execution, Started, Workflows, arn_region, execution_arn,
};
use failoverd::ports::{ErrorKind, PortError};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::store::{DdbError, FakeStore, short_token};
use super::world::{Caller, Fault, NetError, Svc, World};

/// How an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl ExecStatus {
    fn port(self) -> ExecutionStatus {
        match self {
            ExecStatus::Running => ExecutionStatus::Running,
            ExecStatus::Succeeded => ExecutionStatus::Succeeded,
            ExecStatus::Failed | ExecStatus::Aborted => ExecutionStatus::Ended,
        }
    }
}

/// An error as the States Language names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatesError {
    pub error: String,
    pub cause: String,
}

impl StatesError {
    fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    fn ddb(e: DdbError) -> Self {
        Self::new(format!("DynamoDb.{}", e.code), e.message)
    }

    fn to_json(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

/// Does `name` match one entry of `ErrorEquals`?
pub fn error_matches(pattern: &str, name: &str) -> bool {
    match pattern {
        "States.ALL" => name != "States.Runtime" && name != "States.DataLimitExceeded",
        "States.TaskFailed" => !matches!(
            name,
            "States.Timeout" | "States.HeartbeatTimeout" | "States.Runtime"
        ),
        "States.Timeout" => matches!(name, "States.Timeout" | "States.HeartbeatTimeout"),
        p => p == name,
    }
}

/// How a task closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Success,
    Failure,
    HeartbeatTimeout,
    Timeout,
    /// The execution was stopped while the task waited.
    Stopped,
    /// The integration call itself failed: the token never became usable.
    NotIssued,
}

/// A callback task (one attempt: one token).
#[derive(Debug)]
pub struct Task {
    pub token: String,
    pub execution_arn: String,
    pub region: String,
    /// The token item's id and the region it is addressed to.
    pub item_id: String,
    pub target_region: String,
    pub issued_ms: u64,
    /// Every way it was closed (the invariant: exactly one).
    pub closed: Vec<(u64, Closed)>,
    last_heartbeat: Instant,
    tx: Option<oneshot::Sender<Result<Value, StatesError>>>,
}

impl Task {
    pub fn is_open(&self) -> bool {
        self.closed.is_empty()
    }
}

/// An execution.
#[derive(Debug)]
pub struct Exec {
    pub arn: String,
    pub region: String,
    pub name: String,
    pub input: String,
    pub epoch: Option<u64>,
    pub status: ExecStatus,
    pub closed_ms: Option<u64>,
    handle: Option<tokio::task::AbortHandle>,
}

struct Machine {
    region: String,
    def: Arc<Value>,
}

struct SfnState {
    /// Moves with every change of an execution or a task.
    version: u64,
    executions: BTreeMap<String, Exec>,
    tasks: BTreeMap<String, Task>,
    next_token: u64,
    /// Regions whose Step Functions API is down.
    down: BTreeSet<String>,
    /// Regions whose engine is stalled: executions make no progress.
    stalled: BTreeSet<String>,
}

/// Step Functions in every region.
pub struct FakeSfn {
    world: Arc<World>,
    store: Arc<FakeStore>,
    table: String,
    machines: BTreeMap<String, Machine>,
    state: Mutex<SfnState>,
}

/// Summary of a task for the invariants.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub token: String,
    pub execution_arn: String,
    pub item_id: String,
    pub target_region: String,
    pub issued_ms: u64,
    pub closed: Vec<(u64, Closed)>,
}

/// Summary of an execution for the invariants.
#[derive(Debug, Clone)]
pub struct ExecView {
    pub arn: String,
    pub region: String,
    pub name: String,
    pub epoch: Option<u64>,
    pub status: ExecStatus,
}

type Ctx<'a> = (&'a str, &'a str, Option<&'a str>); // (execution arn, entered time, token)

impl FakeSfn {
    /// `machines`: (state machine ARN, its region, its rendered definition).
    pub fn new(
        world: Arc<World>,
        store: Arc<FakeStore>,
        table: &str,
        machines: Vec<(String, String, String)>,
    ) -> Arc<Self> {
        let machines = machines
            .into_iter()
            .map(|(arn, region, def)| {
                let def: Value = serde_json::from_str(&def).expect("the definition is JSON");
                (
                    arn,
                    Machine {
                        region,
                        def: Arc::new(def),
                    },
                )
            })
            .collect();
        Arc::new(Self {
            world,
            store,
            table: table.to_string(),
            machines,
            state: Mutex::new(SfnState {
                version: 0,
                executions: BTreeMap::new(),
                tasks: BTreeMap::new(),
                next_token: 1,
                down: BTreeSet::new(),
                stalled: BTreeSet::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SfnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A counter that moves with every change: nothing to look at while it
    /// stands still. (Bumped on every lock taken to change something.)
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    fn changed(&self) -> MutexGuard<'_, SfnState> {
        let mut g = self.lock();
        g.version += 1;
        g
    }

    /// Take a region's Step Functions API down (or back up). Running
    /// executions carry on: the data plane is not the API.
    pub fn set_down(&self, region: &str, down: bool) {
        let mut g = self.lock();
        if down {
            g.down.insert(region.to_string());
        } else {
            g.down.remove(region);
        }
    }

    /// Stall a region's engine (or let it go on): its executions make no
    /// progress (no state transitions, no calls, no timeouts firing) until
    /// it resumes; the API still answers.
    pub fn set_stalled(&self, region: &str, on: bool) {
        let mut g = self.lock();
        if on {
            g.stalled.insert(region.to_string());
        } else {
            g.stalled.remove(region);
        }
    }

    async fn stall_gate(&self, region: &str) {
        while self.lock().stalled.contains(region) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn tasks(&self) -> Vec<TaskView> {
        self.lock()
            .tasks
            .values()
            .map(|t| TaskView {
                token: t.token.clone(),
                execution_arn: t.execution_arn.clone(),
                item_id: t.item_id.clone(),
                target_region: t.target_region.clone(),
                issued_ms: t.issued_ms,
                closed: t.closed.clone(),
            })
            .collect()
    }

    pub fn executions(&self) -> Vec<ExecView> {
        self.lock()
            .executions
            .values()
            .map(|e| ExecView {
                arn: e.arn.clone(),
                region: e.region.clone(),
                name: e.name.clone(),
                epoch: e.epoch,
                status: e.status,
            })
            .collect()
    }

    // --- the API ---

    /// StartExecution. `Ok(Err(..))` is an AWS error code and message.
    fn start_now(
        self: &Arc<Self>,
        sm_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<(Started, bool), (&'static str, String)> {
        let Some(machine) = self.machines.get(sm_arn) else {
            return Err((
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{sm_arn}'"),
            ));
        };
        let arn = execution_arn(sm_arn, name);
        let mut g = self.changed();
        if let Some(e) = g.executions.get(&arn) {
            if e.status == ExecStatus::Running && e.input == input {
                return Ok((Started::Running { arn }, false));
            }
            return Ok((
                Started::Existing {
                    arn,
                    status: e.status.port(),
                    input: Some(e.input.clone()),
                },
                false,
            ));
        }
        let epoch = serde_json::from_str::<Value>(input)
            .ok()
            .and_then(|v| v.get("epoch").and_then(Value::as_u64));
        let me = self.clone();
        let run_arn = arn.clone();
        let def = machine.def.clone();
        let region = machine.region.clone();
        let input_value: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let handle = tokio::spawn(async move {
            me.run(run_arn, region, def, input_value).await;
        })
        .abort_handle();
        g.executions.insert(
            arn.clone(),
            Exec {
                arn: arn.clone(),
                region: machine.region.clone(),
                name: name.to_string(),
                input: input.to_string(),
                epoch,
                status: ExecStatus::Running,
                closed_ms: None,
                handle: Some(handle),
            },
        );
        drop(g);
        self.world.trace(format!(
            "sfn[{}] started {name} (epoch {epoch:?})",
            machine.region
        ));
        Ok((Started::Running { arn }, true))
    }

    fn describe_now(&self, arn: &str) -> Execution {
        match self.lock().executions.get(arn) {
            Some(e) => Execution {
                status: e.status.port(),
                input: Some(e.input.clone()),
            },
            None => Execution {
                status: ExecutionStatus::NotStarted,
                input: None,
            },
        }
    }

    /// StopExecution: a running execution is aborted, its open task closed.
    pub fn stop_now(&self, arn: &str, cause: &str) {
        let mut g = self.changed();
        let now = self.world.elapsed_ms();
        let Some(e) = g.executions.get_mut(arn) else {
            return;
        };
        if e.status != ExecStatus::Running {
            return;
        }
        e.status = ExecStatus::Aborted;
        e.closed_ms = Some(now);
        if let Some(h) = e.handle.take() {
            h.abort();
        }
        let name = e.name.clone();
        let region = e.region.clone();
        for t in g.tasks.values_mut().filter(|t| t.execution_arn == arn) {
            if t.is_open() {
                t.closed.push((now, Closed::Stopped));
                t.tx = None;
            }
        }
        drop(g);
        self.world
            .trace(format!("sfn[{region}] stopped {name}: {cause}"));
    }

    /// A task callback: `Ok(true)` accepted; `Err(code)` as AWS answers.
    fn callback_now(
        &self,
        region: &str,
        token: &str,
        outcome: Option<Result<Value, StatesError>>,
    ) -> Result<(), &'static str> {
        let mut g = self.changed();
        let now = self.world.elapsed_ms();
        let Some(t) = g.tasks.get_mut(token) else {
            return Err("InvalidToken");
        };
        if t.region != region {
            return Err("InvalidToken");
        }
        if !t.is_open() {
            return Err("TaskTimedOut");
        }
        match outcome {
            None => {
                t.last_heartbeat = Instant::now();
            }
            Some(r) => {
                let how = if r.is_ok() {
                    Closed::Success
                } else {
                    Closed::Failure
                };
                t.closed.push((now, how));
                if let Some(tx) = t.tx.take() {
                    let _ = tx.send(r);
                }
                let line = format!(
                    "sfn[{region}] token {} ({}) closed: {how:?}",
                    short_token(token),
                    t.item_id
                );
                drop(g);
                self.world.trace(line);
            }
        }
        Ok(())
    }

    // --- the interpreter ---

    fn finish(&self, arn: &str, status: ExecStatus, why: &str) {
        let mut g = self.changed();
        let now = self.world.elapsed_ms();
        let Some(e) = g.executions.get_mut(arn) else {
            return;
        };
        if e.status != ExecStatus::Running {
            return;
        }
        e.status = status;
        e.closed_ms = Some(now);
        e.handle = None;
        let line = format!("sfn[{}] {} ended {status:?}: {why}", e.region, e.name);
        drop(g);
        self.world.trace(line);
    }

    async fn run(self: Arc<Self>, arn: String, region: String, def: Arc<Value>, input: Value) {
        let mut data = input;
        let mut name = def["StartAt"].as_str().expect("StartAt").to_string();
        loop {
            self.stall_gate(&region).await;
            let st = def["States"]
                .get(&name)
                .unwrap_or_else(|| panic!("ASL: no state {name:?}"));
            check_fields(&name, st);
            let entered = rfc3339(self.world.true_ms());
            let next = match st["Type"].as_str() {
                Some("Task") => match self.task(&arn, &region, &name, st, &data, &entered).await {
                    Ok(result) => {
                        data = result_path(data, st.get("ResultPath"), result);
                        next_of(&name, st)
                    }
                    Err(err) => match catcher(st, &err) {
                        Some((next, rp)) => {
                            data = result_path(data, rp, err.to_json());
                            Some(next)
                        }
                        None => {
                            self.finish(
                                &arn,
                                ExecStatus::Failed,
                                &format!("{}: {}", err.error, err.cause),
                            );
                            return;
                        }
                    },
                },
                Some("Choice") => Some(choose(&name, st, &data)),
                Some("Pass") => {
                    let result = st.get("Result").cloned().unwrap_or_else(|| data.clone());
                    data = result_path(data, st.get("ResultPath"), result);
                    next_of(&name, st)
                }
                Some("Succeed") => None,
                Some("Fail") => {
                    let why = format!(
                        "{}: {}",
                        st["Error"].as_str().unwrap_or(""),
                        st["Cause"].as_str().unwrap_or("")
                    );
                    self.finish(&arn, ExecStatus::Failed, &why);
                    return;
                }
                other => panic!("ASL: state {name} has unsupported Type {other:?}"),
            };
            match next {
                Some(n) => name = n,
                None => {
                    self.finish(&arn, ExecStatus::Succeeded, &name);
                    return;
                }
            }
        }
    }

    /// A Task state with its retries.
    async fn task(
        &self,
        arn: &str,
        region: &str,
        name: &str,
        st: &Value,
        data: &Value,
        entered: &str,
    ) -> Result<Value, StatesError> {
        let retriers = st
            .get("Retry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut counts = vec![0u64; retriers.len()];
        loop {
            self.stall_gate(region).await;
            let err = match self.attempt(arn, region, name, st, data, entered).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(i) = retriers.iter().position(|r| {
                r["ErrorEquals"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|p| error_matches(p.as_str().unwrap_or(""), &err.error))
                })
            }) else {
                return Err(err);
            };
            let r = &retriers[i];
            let max = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
            if counts[i] >= max {
                return Err(err);
            }
            counts[i] += 1;
            let delay = retry_delay(r, counts[i], || self.world.with_rng(|g| g.unit()));
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt of a Task state.
    async fn attempt(
        &self,
        arn: &str,
        region: &str,
        name: &str,
        st: &Value,
        data: &Value,
        entered: &str,
    ) -> Result<Value, StatesError> {
        let resource = st["Resource"].as_str().unwrap_or_default();
        let (replica, op) = parse_resource(resource)
            .unwrap_or_else(|| panic!("ASL: state {name} has unsupported Resource {resource:?}"));
        let callback = op == "putItem.waitForTaskToken";
        let token = callback.then(|| {
            let mut g = self.lock();
            let n = g.next_token;
            g.next_token += 1;
            format!("token:{region}:{n}")
        });
        let params = eval_params(&st["Parameters"], data, (arn, entered, token.as_deref()))?;
        assert_eq!(
            params["TableName"].as_str(),
            Some(self.table.as_str()),
            "ASL: state {name} writes another table"
        );
        match op {
            "updateItem" => {
                let w = record_write(name, &params)?;
                self.store
                    .workflow_update(region, replica, &w)
                    .await
                    .map_err(StatesError::ddb)?;
                Ok(json!({}))
            }
            "putItem" => {
                self.store
                    .workflow_put(region, replica, &params["Item"])
                    .await
                    .map_err(StatesError::ddb)?;
                Ok(json!({}))
            }
            "putItem.waitForTaskToken" => {
                let token = token.expect("a callback task has a token");
                self.wait_for_callback(arn, region, name, st, &params, replica, token)
                    .await
            }
            other => panic!("ASL: state {name}: unsupported DynamoDB call {other}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn wait_for_callback(
        &self,
        arn: &str,
        region: &str,
        name: &str,
        st: &Value,
        params: &Value,
        replica: &str,
        token: String,
    ) -> Result<Value, StatesError> {
        let started = Instant::now();
        let timeout = st
            .get("TimeoutSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        let heartbeat = st
            .get("HeartbeatSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        let item = &params["Item"];
        let s = |k: &str| item[k]["S"].as_str().unwrap_or_default().to_string();
        let (tx, mut rx) = oneshot::channel();
        let now = self.world.elapsed_ms();
        self.changed().tasks.insert(
            token.clone(),
            Task {
                token: token.clone(),
                execution_arn: arn.to_string(),
                region: region.to_string(),
                item_id: s("sk"),
                target_region: s("target_region"),
                issued_ms: now,
                closed: Vec::new(),
                last_heartbeat: started,
                tx: Some(tx),
            },
        );
        if let Err(e) = self.store.workflow_put(region, replica, item).await {
            self.close(&token, Closed::NotIssued);
            return Err(StatesError::ddb(e));
        }
        self.world.trace(format!(
            "sfn[{region}] {name}: token {} issued: {} for {}",
            short_token(&token),
            s("sk"),
            s("target_region")
        ));
        loop {
            let last_hb = self.lock().tasks.get(&token).map(|t| t.last_heartbeat);
            let Some(last_hb) = last_hb else {
                return Err(StatesError::new("States.Runtime", "task vanished"));
            };
            let deadlines = [timeout.map(|t| started + t), heartbeat.map(|h| last_hb + h)];
            let wake = deadlines.iter().flatten().min().copied();
            let expired = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = &mut rx => {
                    return r.unwrap_or_else(|_| Err(StatesError::new("States.Runtime", "the execution was stopped")));
                }
                _ = expired => {
                    self.stall_gate(region).await;
                    let now = Instant::now();
                    if !self.lock().tasks.get(&token).is_some_and(Task::is_open) {
                        // Closed by a callback at this very instant.
                        continue;
                    }
                    if timeout.is_some_and(|t| now >= started + t) {
                        self.close(&token, Closed::Timeout);
                        return Err(StatesError::new("States.Timeout", "the task timed out"));
                    }
                    let hb = self.lock().tasks.get(&token).map(|t| t.last_heartbeat).unwrap_or(last_hb);
                    if heartbeat.is_some_and(|h| now >= hb + h) {
                        self.close(&token, Closed::HeartbeatTimeout);
                        return Err(StatesError::new("States.HeartbeatTimeout", "no heartbeat in time"));
                    }
                }
            }
        }
    }

    fn close(&self, token: &str, how: Closed) {
        let mut g = self.changed();
        let now = self.world.elapsed_ms();
        let Some(t) = g.tasks.get_mut(token) else {
            return;
        };
        if t.is_open() {
            t.closed.push((now, how));
            t.tx = None;
            let line = format!(
                "sfn[{}] token {} ({}) closed: {how:?}",
                t.region,
                short_token(token),
                t.item_id
            );
            drop(g);
            self.world.trace(line);
        }
    }
}

/// The fields the interpreter knows, per state type: anything else panics.
fn check_fields(name: &str, st: &Value) {
    let allowed: &[&str] = match st["Type"].as_str() {
        Some("Task") => &[
            "Type",
            "Comment",
            "Resource",
            "Parameters",
            "ResultPath",
            "Retry",
            "Catch",
            "Next",
            "End",
            "HeartbeatSeconds",
            "TimeoutSeconds",
        ],
        Some("Choice") => &["Type", "Comment", "Choices", "Default"],
        Some("Pass") => &["Type", "Comment", "Result", "ResultPath", "Next", "End"],
        Some("Succeed") => &["Type", "Comment"],
        Some("Fail") => &["Type", "Comment", "Error", "Cause"],
        other => panic!("ASL: state {name} has unsupported Type {other:?}"),
    };
    for k in st.as_object().into_iter().flat_map(|m| m.keys()) {
        assert!(
            allowed.contains(&k.as_str()),
            "ASL: state {name} uses {k}, which the simulation's interpreter does not implement"
        );
    }
}

fn next_of(name: &str, st: &Value) -> Option<String> {
    match (st.get("Next").and_then(Value::as_str), st.get("End")) {
        (Some(n), _) => Some(n.to_string()),
        (None, Some(Value::Bool(true))) => None,
        _ => panic!("ASL: state {name} has neither Next nor End"),
    }
}

/// The first catcher matching `err`: its `Next` and `ResultPath`.
fn catcher<'a>(st: &'a Value, err: &StatesError) -> Option<(String, Option<&'a Value>)> {
    st.get("Catch")?.as_array()?.iter().find_map(|c| {
        let hit = c["ErrorEquals"]
            .as_array()?
            .iter()
            .any(|p| error_matches(p.as_str().unwrap_or(""), &err.error));
        hit.then(|| {
            (
                c["Next"].as_str().unwrap_or_default().to_string(),
                c.get("ResultPath"),
            )
        })
    })
}

/// The delay before retry `n` (1-based) of retrier `r`; `unit` draws the
/// FULL jitter.
pub fn retry_delay(r: &Value, n: u64, unit: impl FnOnce() -> f64) -> Duration {
    let interval = r
        .get("IntervalSeconds")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
    let mut secs = interval * rate.powi(n as i32 - 1);
    if let Some(max) = r.get("MaxDelaySeconds").and_then(Value::as_f64) {
        secs = secs.min(max);
    }
    match r.get("JitterStrategy").and_then(Value::as_str) {
        None | Some("NONE") => {}
        Some("FULL") => secs *= unit(),
        Some(other) => panic!("ASL: unsupported JitterStrategy {other}"),
    }
    Duration::from_secs_f64(secs)
}

/// `ResultPath`: absent = `$` (the result replaces the input), `null` =
/// discard the result, `$.a.b` = put it there.
fn result_path(mut data: Value, path: Option<&Value>, result: Value) -> Value {
    match path {
        None => result,
        Some(Value::Null) => data,
        Some(Value::String(p)) if p == "$" => result,
        Some(Value::String(p)) => {
            let keys: Vec<&str> = p
                .strip_prefix("$.")
                .unwrap_or_else(|| panic!("ASL: unsupported ResultPath {p}"))
                .split('.')
                .collect();
            let mut cur = &mut data;
            for (i, k) in keys.iter().enumerate() {
                if !cur.is_object() {
                    *cur = json!({});
                }
                let map = cur.as_object_mut().expect("object");
                if i + 1 == keys.len() {
                    map.insert(k.to_string(), result);
                    break;
                }
                cur = map.entry(k.to_string()).or_insert_with(|| json!({}));
            }
            data
        }
        Some(other) => panic!("ASL: unsupported ResultPath {other}"),
    }
}

fn choose(name: &str, st: &Value, data: &Value) -> String {
    for rule in st["Choices"].as_array().expect("Choices") {
        let var = rule["Variable"].as_str().expect("Variable");
        let v = lookup(data, var);
        let hit = if let Some(b) = rule.get("BooleanEquals") {
            v == Some(b)
        } else if let Some(s) = rule.get("StringEquals") {
            v == Some(s)
        } else if let Some(n) = rule.get("NumericEquals") {
            v.and_then(Value::as_f64) == n.as_f64()
        } else if let Some(p) = rule.get("IsPresent") {
            Some(v.is_some()) == p.as_bool()
        } else {
            panic!(
                "ASL: state {name} uses a Choice operator the interpreter does not implement: {rule}"
            )
        };
        if hit {
            return rule["Next"].as_str().expect("Next").to_string();
        }
    }
    st["Default"]
        .as_str()
        .unwrap_or_else(|| panic!("ASL: no choice matched in {name} and there is no Default"))
        .to_string()
}

/// JSONPath `$`, `$.a.b` on `data`.
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "$" {
        return Some(data);
    }
    let mut cur = data;
    for k in path.strip_prefix("$.")?.split('.') {
        cur = cur.get(k)?;
    }
    Some(cur)
}

fn eval_params(v: &Value, data: &Value, ctx: Ctx<'_>) -> Result<Value, StatesError> {
    Ok(match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                match k.strip_suffix(".$") {
                    Some(base) => {
                        let expr = val.as_str().ok_or_else(|| {
                            StatesError::new("States.Runtime", format!("{k} is not a path"))
                        })?;
                        out.insert(base.to_string(), eval_expr(expr, data, ctx)?);
                    }
                    None => {
                        out.insert(k.clone(), eval_params(val, data, ctx)?);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| eval_params(x, data, ctx))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

fn eval_expr(expr: &str, data: &Value, ctx: Ctx<'_>) -> Result<Value, StatesError> {
    let missing = || StatesError::new("States.Runtime", format!("the path {expr} matches nothing"));
    if let Some(rest) = expr.strip_prefix("States.Format(") {
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| StatesError::new("States.Runtime", format!("bad intrinsic {expr}")))?;
        return format_intrinsic(inner, data, ctx).map(Value::String);
    }
    if expr.starts_with("States.") {
        panic!("ASL: unsupported intrinsic {expr}");
    }
    if let Some(p) = expr.strip_prefix("$$.") {
        let (arn, entered, token) = ctx;
        return match p {
            "Execution.Id" => Ok(Value::String(arn.to_string())),
            "State.EnteredTime" => Ok(Value::String(entered.to_string())),
            "Task.Token" => token
                .map(|t| Value::String(t.to_string()))
                .ok_or_else(missing),
            other => panic!("ASL: unsupported context path $$.{other}"),
        };
    }
    lookup(data, expr).cloned().ok_or_else(missing)
}

/// `States.Format('template {}', arg, ...)`: `{}` placeholders, `\'`, `\{`,
/// `\}`, `\\` escapes; arguments are paths or literals; strings go in
/// raw, other values as JSON.
fn format_intrinsic(inner: &str, data: &Value, ctx: Ctx<'_>) -> Result<String, StatesError> {
    let bad =
        |why: &str| StatesError::new("States.Runtime", format!("States.Format({inner}): {why}"));
    let mut chars = inner.chars().peekable();
    if chars.next() != Some('\'') {
        return Err(bad("the template must be a quoted string"));
    }
    // The template, as pieces between placeholders.
    let mut pieces = vec![String::new()];
    loop {
        match chars.next() {
            None => return Err(bad("unterminated template")),
            Some('\\') => match chars.next() {
                Some(c) => pieces.last_mut().expect("a piece").push(c),
                None => return Err(bad("dangling escape")),
            },
            Some('\'') => break,
            Some('{') if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.push(String::new());
            }
            Some(c) => pieces.last_mut().expect("a piece").push(c),
        }
    }
    let rest: String = chars.collect();
    let args: Vec<&str> = rest
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if args.len() != pieces.len() - 1 {
        return Err(bad(
            "the number of arguments does not match the placeholders",
        ));
    }
    let mut out = pieces[0].clone();
    for (arg, piece) in args.iter().zip(&pieces[1..]) {
        let v = if arg.starts_with('$') {
            eval_expr(arg, data, ctx)?
        } else if let Some(s) = arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
            Value::String(s.to_string())
        } else {
            serde_json::from_str(arg)
                .map_err(|_| bad("an argument is neither a path nor a literal"))?
        };
        match v {
            Value::String(s) => out.push_str(&s),
            Value::Number(_) | Value::Bool(_) | Value::Null => out.push_str(&v.to_string()),
            _ => return Err(bad("an argument is an object or an array")),
        }
        out.push_str(piece);
    }
    Ok(out)
}

/// `arn:aws:states:<region>::aws-sdk:dynamodb:<op>` -> (region, op).
fn parse_resource(r: &str) -> Option<(&str, &str)> {
    let mut parts = r.splitn(7, ':');
    let (arn, aws, states, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (_account, sdk, svc) = (parts.next()?, parts.next()?, parts.next()?);
    let op = r.rsplit("dynamodb:").next()?;
    (arn == "arn"
        && aws == "aws"
        && states == "states"
        && sdk == "aws-sdk"
        && svc.starts_with("dynamodb"))
    .then_some((region, op))
}

/// The control record's update expressions the workflow may send, exactly.
const FENCE: &str = "epoch = :epoch AND execution = :exec AND #state = :failing";
const FENCE_NOT_SWITCHED: &str =
    "epoch = :epoch AND execution = :exec AND #state = :failing AND step <> :switched";
const MARK: &str = "SET step = :step, step_at = :now ADD version :one";
const SWITCH: &str = "SET active = :to, previous = :from, step = :step, step_at = :now, switched_at = :now ADD version :one";
const STEADY: &str =
    "SET #state = :steady, step = :step, step_at = :now, aborts = :zero ADD version :one";
const ABORT: &str =
    "SET #state = :steady, step = :step, step_at = :now ADD version :one, aborts :one";

/// Map the workflow's `updateItem` on the control record to the
/// `RecordWrite` it is.
fn record_write(state: &str, p: &Value) -> Result<RecordWrite, StatesError> {
    let s = |k: &str| p["ExpressionAttributeValues"][k]["S"].as_str();
    let n = |k: &str| p["ExpressionAttributeValues"][k]["N"].as_str();
    assert_eq!(
        (p["Key"]["pk"]["S"].as_str(), p["Key"]["sk"]["S"].as_str()),
        (Some("CONTROL"), Some("CONTROL")),
        "ASL: {state} updates another item than the control record"
    );
    assert_eq!(
        p["ExpressionAttributeNames"],
        json!({"#state": "state"}),
        "ASL: {state}"
    );
    assert_eq!(s(":failing"), Some("failing_over"), "ASL: {state}");
    assert_eq!(n(":one"), Some("1"), "ASL: {state}");
    let cond = p["ConditionExpression"].as_str().unwrap_or_default();
    let update = p["UpdateExpression"].as_str().unwrap_or_default();
    let epoch: u64 = n(":epoch").and_then(|e| e.parse().ok()).ok_or_else(|| {
        StatesError::new("DynamoDb.ValidationException", ":epoch is not a number")
    })?;
    let execution = s(":exec").unwrap_or_default().to_string();
    let step = s(":step").unwrap_or_default();
    let w = match step {
        "mark" if cond == FENCE && update == MARK => RecordWrite::Mark { epoch, execution },
        "switched" if cond == FENCE && update == SWITCH => RecordWrite::Switch {
            epoch,
            execution,
            from: s(":from").unwrap_or_default().to_string(),
            to: s(":to").unwrap_or_default().to_string(),
            at: s(":now").and_then(parse_time).unwrap_or_default(),
        },
        "done"
            if cond == FENCE
                && update == STEADY
                && s(":steady") == Some("steady")
                && n(":zero") == Some("0") =>
        {
            RecordWrite::Steady { epoch, execution }
        }
        "aborted"
            if cond == FENCE_NOT_SWITCHED
                && update == ABORT
                && s(":steady") == Some("steady")
                && s(":switched") == Some("switched") =>
        {
            RecordWrite::Abort { epoch, execution }
        }
        _ => panic!(
            "ASL: {state} sends a control-record update core::record does not know: step {step:?}, condition {cond:?}, update {update:?}"
        ),
    };
    Ok(w)
}

/// The `Workflows` port of one caller.
pub struct SfnClient {
    pub sfn: Arc<FakeSfn>,
    pub caller: Caller,
}

impl SfnClient {
    fn err(&self, op: &str, region: &str, code: &str, msg: String) -> PortError {
        PortError::new(
            "Step Functions",
            op.to_string(),
            region.to_string(),
            failoverd::aws::errors::kind_of_code(code),
            Fault(format!("{code}: {msg}")),
        )
    }

    /// The network, and the region's API being up.
    async fn arrive(&self, op: &str, region: &str) -> Result<super::world::Arrived, PortError> {
        let a = self
            .sfn
            .world
            .send(&self.caller, Svc::Sfn)
            .await
            .map_err(|e| self.net(op, region, e))?;
        if self.sfn.lock().down.contains(region) {
            let _ = self.sfn.world.reply(a, false).await;
            return Err(self.err(
                op,
                region,
                "ServiceUnavailable",
                "Step Functions is unavailable".into(),
            ));
        }
        Ok(a)
    }

    fn net(&self, op: &str, region: &str, e: NetError) -> PortError {
        match e {
            NetError::Throttled => {
                self.err(op, region, "ThrottlingException", "Rate exceeded".into())
            }
            NetError::Transport(t) => PortError::new(
                "Step Functions",
                op.to_string(),
                region.to_string(),
                ErrorKind::Transport,
                Fault(t),
            ),
        }
    }

    async fn depart(
        &self,
        op: &str,
        region: &str,
        a: super::world::Arrived,
        wrote: bool,
    ) -> Result<(), PortError> {
        self.sfn
            .world
            .reply(a, wrote)
            .await
            .map_err(|e| self.net(op, region, e))
    }

    async fn callback(
        &self,
        op: &str,
        region: &str,
        token: &str,
        outcome: Option<Result<Value, StatesError>>,
    ) -> Result<Callback, PortError> {
        let a = self.arrive(op, region).await?;
        let what = match &outcome {
            None => "heartbeat",
            Some(Ok(_)) => "success",
            Some(Err(_)) => "failure",
        };
        let r = self.sfn.callback_now(region, token, outcome);
        if outcome_is_close(what) {
            self.sfn.world.trace(format!(
                "{} sends {what} for token {}: {}",
                self.caller.site(),
                short_token(token),
                match r {
                    Ok(()) => "accepted",
                    Err(code) => code,
                }
            ));
        }
        self.depart(op, region, a, r.is_ok()).await?;
        match r {
            Ok(()) => Ok(Callback::Accepted),
            Err("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist") => {
                Ok(Callback::AlreadyClosed)
            }
            Err(code) => Err(self.err(op, region, code, String::new())),
        }
    }
}

fn outcome_is_close(what: &str) -> bool {
    what != "heartbeat"
}

#[async_trait]
impl Workflows for SfnClient {
    async fn start(&self, sm_arn: &str, name: &str, input: &str) -> Result<Started, PortError> {
        let region = arn_region(sm_arn).unwrap_or_default().to_string();
        let op = format!("StartExecution {name}");
        let a = self.arrive(&op, &region).await?;
        let r = self.sfn.start_now(sm_arn, name, input);
        let created = matches!(r, Ok((_, true)));
        self.depart(&op, &region, a, created).await?;
        match r {
            Ok((s, _)) => Ok(s),
            Err((code, msg)) => Err(self.err(&op, &region, code, msg)),
        }
    }

    async fn describe(&self, arn: &str) -> Result<Execution, PortError> {
        let region = arn_region(arn).unwrap_or_default().to_string();
        let a = self.arrive("DescribeExecution", &region).await?;
        let e = self.sfn.describe_now(arn);
        self.depart("DescribeExecution", &region, a, false).await?;
        Ok(e)
    }

    async fn stop(&self, arn: &str, cause: &str) -> Result<(), PortError> {
        let region = arn_region(arn).unwrap_or_default().to_string();
        let a = self.arrive("StopExecution", &region).await?;
        self.sfn.stop_now(arn, cause);
        self.depart("StopExecution", &region, a, true).await
    }

    async fn send_task_success(
        &self,
        region: &str,
        token: &str,
        output: &str,
    ) -> Result<Callback, PortError> {
        let v: Value = serde_json::from_str(output).unwrap_or(Value::String(output.to_string()));
        self.callback("SendTaskSuccess", region, token, Some(Ok(v)))
            .await
    }

    async fn send_task_failure(
        &self,
        region: &str,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Callback, PortError> {
        let e = StatesError::new(error, cause);
        self.callback("SendTaskFailure", region, token, Some(Err(e)))
            .await
    }

    async fn send_task_heartbeat(&self, region: &str, token: &str) -> Result<Callback, PortError> {
        self.callback("SendTaskHeartbeat", region, token, None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::store::{Consistency, StoreClient};
    use failoverd::core::control::{Phase, Step, execution_name};
    use failoverd::core::plan::FailoverPlan;
    use failoverd::ports::ControlStore;
    use failoverd::ports::store::Write;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "us-east-2"];

    fn sm(region: &str) -> String {
        format!("arn:aws:states:{region}:111122223333:stateMachine:failoverd-failover")
    }

    /// The shipped definition, rendered for each region as deploy/ does.
    fn fleet(seed: u64) -> (Arc<World>, Arc<FakeStore>, Arc<FakeSfn>) {
        let world = World::new(seed);
        let regions: Vec<String> = REGIONS.map(String::from).to_vec();
        let store = FakeStore::new(world.clone(), Consistency::Mrsc, &regions);
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/statemachines/failover.asl.json"),
        )
        .unwrap();
        let machines = REGIONS
            .iter()
            .map(|r| {
                let def = failoverd::aws::sfn::render_definition(
                    &template,
                    &[
                        ("ControlTable", "failoverd-control"),
                        ("ControlTableRegion", r),
                    ],
                )
                .unwrap();
                (sm(r), r.to_string(), def)
            })
            .collect();
        let sfn = FakeSfn::new(world.clone(), store.clone(), "failoverd-control", machines);
        (world, store, sfn)
    }

    fn client(store: &Arc<FakeStore>, region: &str) -> StoreClient {
        StoreClient {
            store: store.clone(),
            caller: Caller::Harness,
            replica: region.into(),
        }
    }

    /// Initialize the record and claim epoch 2 for `to`: the plan.
    async fn claimed(store: &Arc<FakeStore>, to: &str, old_region_healthy: bool) -> FailoverPlan {
        let c = client(store, to);
        c.write_record(&RecordWrite::Initialize {
            active: "us-east-1".into(),
            incarnation: "abc".into(),
            by: "test".into(),
            at: 1,
            reason: "test".into(),
        })
        .await
        .unwrap();
        let r = c.read_record().await.unwrap().unwrap();
        let p = FailoverPlan {
            from: r.active.clone(),
            to: to.into(),
            epoch: 2,
            execution: execution_name("abc", 2),
            initiator: to.into(),
            expected_version: r.version,
            reason: "test".into(),
            ungraceful: false,
            old_region_healthy,
            forced: false,
            automatic: true,
            changed_by: to.into(),
            claimed_at: super::super::world::EPOCH_MS,
            supersedes: None,
            state_machine: None,
        };
        assert_eq!(
            c.write_record(&RecordWrite::Claim { plan: p.clone() })
                .await
                .unwrap(),
            Write::Written
        );
        p
    }

    async fn wait_status(sfn: &Arc<FakeSfn>, arn: &str) -> ExecStatus {
        for _ in 0..2000 {
            let st = sfn.describe_now(arn).status;
            if st != ExecutionStatus::Running {
                return sfn
                    .executions()
                    .into_iter()
                    .find(|e| e.arn == arn)
                    .unwrap()
                    .status;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{arn} still running");
    }

    /// Answer every token addressed to `region` with success.
    async fn answer(sfn: &Arc<FakeSfn>, region: &str, n: usize) {
        let c = SfnClient {
            sfn: sfn.clone(),
            caller: Caller::Harness,
        };
        let mut done = 0;
        while done < n {
            for t in sfn.tasks() {
                if t.target_region == region && t.closed.is_empty() {
                    let issuer = arn_region(&t.execution_arn).unwrap().to_string();
                    assert_eq!(
                        c.send_task_success(&issuer, &t.token, "{}").await.unwrap(),
                        Callback::Accepted
                    );
                    // A second success for the same token: already closed.
                    assert_eq!(
                        c.send_task_success(&issuer, &t.token, "{}").await.unwrap(),
                        Callback::AlreadyClosed
                    );
                    done += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[test]
    fn the_shipped_workflow_runs_a_failover_through() {
        rt().block_on(async {
            let (_world, store, sfn) = fleet(1);
            let p = claimed(&store, "us-west-2", true).await;
            let c = SfnClient {
                sfn: sfn.clone(),
                caller: Caller::Harness,
            };
            let input = p.execution_input().to_string();
            let Started::Running { arn } = c
                .start(&sm("us-west-2"), &p.execution, &input)
                .await
                .unwrap()
            else {
                panic!("not started")
            };
            // Starting it again with the same input while it runs: the same execution.
            assert_eq!(
                c.start(&sm("us-west-2"), &p.execution, &input)
                    .await
                    .unwrap(),
                Started::Running { arn: arn.clone() }
            );
            // Prepare (for us-west-2), then drain (for us-east-1).
            answer(&sfn, "us-west-2", 1).await;
            answer(&sfn, "us-east-1", 1).await;
            assert_eq!(wait_status(&sfn, &arn).await, ExecStatus::Succeeded);
            let r = store.record("us-east-1").unwrap();
            assert_eq!(
                (r.active.as_str(), r.phase, r.step),
                ("us-west-2", Phase::Steady, Step::Done)
            );
            assert_eq!(
                r.version, 5,
                "init, claim, mark, switch, steady... and nothing else"
            );
            // The name stays reserved after close: ExecutionAlreadyExists.
            assert!(matches!(
                c.start(&sm("us-west-2"), &p.execution, &input)
                    .await
                    .unwrap(),
                Started::Existing {
                    status: ExecutionStatus::Succeeded,
                    ..
                }
            ));
            // Tokens: each closed exactly once, by success.
            let tasks = sfn.tasks();
            assert_eq!(tasks.len(), 2);
            assert!(
                tasks
                    .iter()
                    .all(|t| t.closed.len() == 1 && t.closed[0].1 == Closed::Success)
            );
        });
    }

    #[test]
    fn a_prepare_that_never_answers_times_out_and_aborts() {
        rt().block_on(async {
            let (_world, store, sfn) = fleet(2);
            let p = claimed(&store, "us-west-2", true).await;
            let c = SfnClient {
                sfn: sfn.clone(),
                caller: Caller::Harness,
            };
            let t0 = Instant::now();
            let Started::Running { arn } = c
                .start(
                    &sm("us-west-2"),
                    &p.execution,
                    &p.execution_input().to_string(),
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            // Heartbeats keep it alive past HeartbeatSeconds (60), not past
            // TimeoutSeconds (900: a tier2 target may scale up in prepare).
            let token = loop {
                if let Some(t) = sfn.tasks().first() {
                    break t.token.clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            for _ in 0..31 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let _ = c.send_task_heartbeat("us-west-2", &token).await;
            }
            assert_eq!(wait_status(&sfn, &arn).await, ExecStatus::Failed);
            let task = &sfn.tasks()[0];
            assert_eq!(task.closed.len(), 1);
            assert_eq!(task.closed[0].1, Closed::Timeout);
            // TimeoutSeconds counts from the task's start.
            let took = task.closed[0].0 - task.issued_ms;
            assert!((899_000..=900_000).contains(&took), "{took} ms");
            assert!(t0.elapsed() >= Duration::from_secs(900));
            let r = store.record("us-east-1").unwrap();
            assert_eq!(
                (r.active.as_str(), r.phase, r.step, r.aborts),
                ("us-east-1", Phase::Steady, Step::Aborted, 1)
            );
            // A late success: the task is closed.
            assert_eq!(
                c.send_task_success("us-west-2", &token, "{}")
                    .await
                    .unwrap(),
                Callback::AlreadyClosed
            );
            // Without heartbeats, HeartbeatSeconds (60) closes it first.
            let (_w, store2, sfn2) = fleet(3);
            let p2 = claimed(&store2, "us-west-2", true).await;
            let c2 = SfnClient {
                sfn: sfn2.clone(),
                caller: Caller::Harness,
            };
            let Started::Running { arn: arn2 } = c2
                .start(
                    &sm("us-west-2"),
                    &p2.execution,
                    &p2.execution_input().to_string(),
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(wait_status(&sfn2, &arn2).await, ExecStatus::Failed);
            assert_eq!(sfn2.tasks()[0].closed[0].1, Closed::HeartbeatTimeout);
        });
    }

    #[test]
    fn a_settled_record_makes_the_workflow_superseded() {
        rt().block_on(async {
            let (_world, store, sfn) = fleet(4);
            let p = claimed(&store, "us-west-2", false).await;
            // Settle before the workflow starts: every later write is refused.
            let c = client(&store, "us-west-2");
            let r = c.read_record().await.unwrap().unwrap();
            c.write_record(&RecordWrite::Settle {
                expected_version: r.version,
                execution: p.execution.clone(),
                outcome: failoverd::core::record::Settlement::Aborted,
                by: "test".into(),
                at: 2,
                reason: "test".into(),
            })
            .await
            .unwrap();
            let w = SfnClient {
                sfn: sfn.clone(),
                caller: Caller::Harness,
            };
            let Started::Running { arn } = w
                .start(
                    &sm("us-west-2"),
                    &p.execution,
                    &p.execution_input().to_string(),
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(wait_status(&sfn, &arn).await, ExecStatus::Failed);
            assert!(sfn.tasks().is_empty(), "no token after a Superseded mark");
            assert_eq!(store.record("us-east-1").unwrap().version, r.version + 1);
        });
    }

    #[test]
    fn dynamodb_errors_are_retried_with_backoff_then_caught() {
        rt().block_on(async {
            let (world, store, sfn) = fleet(5);
            let p = claimed(&store, "us-west-2", false).await;
            // us-west-2's replica is cut off: MarkFailingOver fails with
            // InternalServerError five times after the first try, then
            // AbortWorkflowError fails the same way, then WorkflowFailed.
            store.isolate("us-west-2", true);
            let w = SfnClient {
                sfn: sfn.clone(),
                caller: Caller::Harness,
            };
            let t0 = Instant::now();
            let Started::Running { arn } = w
                .start(
                    &sm("us-west-2"),
                    &p.execution,
                    &p.execution_input().to_string(),
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(wait_status(&sfn, &arn).await, ExecStatus::Failed);
            let took = t0.elapsed();
            // Two states x five retries, each within [0, min(2^(n-1), 8)] s.
            assert!(
                took <= Duration::from_secs(2 * (1 + 2 + 4 + 8 + 8) + 5),
                "{took:?}"
            );
            let trace = world.trace_text();
            assert!(trace.contains("WorkflowFailed"), "{trace}");
            assert_eq!(
                store.record("us-east-1").unwrap().step,
                Step::Claimed,
                "nothing written"
            );
        });
    }

    #[test]
    fn stopping_closes_the_open_task_and_a_callback_gets_task_timed_out() {
        rt().block_on(async {
            let (_world, store, sfn) = fleet(6);
            let p = claimed(&store, "us-west-2", false).await;
            let w = SfnClient {
                sfn: sfn.clone(),
                caller: Caller::Harness,
            };
            let Started::Running { arn } = w
                .start(
                    &sm("us-west-2"),
                    &p.execution,
                    &p.execution_input().to_string(),
                )
                .await
                .unwrap()
            else {
                panic!()
            };
            let token = loop {
                if let Some(t) = sfn.tasks().first() {
                    break t.token.clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            w.stop(&arn, "test").await.unwrap();
            assert_eq!(sfn.describe_now(&arn).status, ExecutionStatus::Ended);
            assert_eq!(sfn.tasks()[0].closed[0].1, Closed::Stopped);
            assert_eq!(
                w.send_task_success("us-west-2", &token, "{}")
                    .await
                    .unwrap(),
                Callback::AlreadyClosed
            );
            // To the wrong region, or an unknown token: InvalidToken.
            assert_eq!(
                w.send_task_heartbeat("us-east-1", &token).await.unwrap(),
                Callback::AlreadyClosed
            );
            assert_eq!(
                w.send_task_heartbeat("us-west-2", "nope").await.unwrap(),
                Callback::AlreadyClosed
            );
            // A different input for a running or closed name: Existing.
            assert!(matches!(
                w.start(&sm("us-west-2"), &p.execution, "{}").await.unwrap(),
                Started::Existing { .. }
            ));
            // Unknown executions are NotStarted; unknown machines an error.
            assert_eq!(
                w.describe(&execution_arn(&sm("us-east-2"), "x"))
                    .await
                    .unwrap()
                    .status,
                ExecutionStatus::NotStarted
            );
            let e = w
                .start("arn:aws:states:us-east-2:1:stateMachine:none", "x", "{}")
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::NotFound);
        });
    }

    #[test]
    fn intrinsics_paths_and_retry_delays() {
        let data = json!({"epoch": 7, "execution": "failover-x-7", "from": "a", "to": "b", "reason": "it's", "ok": true});
        let ctx: Ctx<'_> = ("arn:x", "2026-01-01T00:00:00.000Z", Some("tok"));
        assert_eq!(
            eval_expr("States.Format('{}', $.epoch)", &data, ctx).unwrap(),
            json!("7")
        );
        assert_eq!(
            eval_expr(
                "States.Format('{} -> {}: {}', $.from, $.to, $.reason)",
                &data,
                ctx
            )
            .unwrap(),
            json!("a -> b: it's")
        );
        assert_eq!(
            eval_expr(
                "States.Format('{}#{}#x', $$.State.EnteredTime, $.execution)",
                &data,
                ctx
            )
            .unwrap(),
            json!("2026-01-01T00:00:00.000Z#failover-x-7#x")
        );
        assert_eq!(
            eval_expr("States.Format('\\{{}\\}', $.ok)", &data, ctx).unwrap(),
            json!("{true}")
        );
        assert_eq!(
            eval_expr("$$.Task.Token", &data, ctx).unwrap(),
            json!("tok")
        );
        assert_eq!(
            eval_expr("$.missing", &data, ctx).unwrap_err().error,
            "States.Runtime"
        );
        assert!(eval_expr("States.Format('{} {}', $.epoch)", &data, ctx).is_err());
        assert_eq!(
            result_path(json!({"a": 1}), Some(&json!("$.x.y")), json!(2)),
            json!({"a": 1, "x": {"y": 2}})
        );
        assert_eq!(
            result_path(json!({"a": 1}), Some(&Value::Null), json!(2)),
            json!({"a": 1})
        );
        assert_eq!(result_path(json!({"a": 1}), None, json!(2)), json!(2));
        let r = json!({"IntervalSeconds": 1, "BackoffRate": 2.0, "MaxDelaySeconds": 8, "JitterStrategy": "FULL"});
        assert_eq!(retry_delay(&r, 1, || 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&r, 3, || 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(&r, 5, || 1.0), Duration::from_secs(8), "capped");
        assert_eq!(
            retry_delay(&r, 5, || 0.25),
            Duration::from_secs(2),
            "full jitter"
        );
        assert!(error_matches("States.ALL", "DynamoDb.ThrottlingException"));
        assert!(!error_matches("States.ALL", "States.Runtime"));
        assert!(error_matches("States.Timeout", "States.HeartbeatTimeout"));
        assert!(!error_matches("States.TaskFailed", "States.Timeout"));
        assert!(error_matches("States.TaskFailed", "StepFailed"));
    }
}
