//! Step Functions adapter: state machine bootstrap; executions and task
//! callbacks join with the control loop.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::DisplayErrorContext;
use aws_sdk_sfn::types::StateMachineType;

/// A Step Functions call failed.
#[derive(Debug, thiserror::Error)]
#[error("Step Functions {op} in {region}: {detail}")]
pub struct SfnError {
    pub op: &'static str,
    pub region: String,
    pub detail: String,
}

fn region_of(client: &Client) -> String {
    client
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default()
}

/// Render a definition template: `${Name}` placeholders, as CloudFormation's
/// `DefinitionSubstitutions` does. An unknown placeholder is an error.
pub fn render_definition(template: &str, substitutions: &[(&str, &str)]) -> Result<String, String> {
    let mut out = template.to_string();
    for (k, v) in substitutions {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    if let Some(start) = out.find("${") {
        let end = out[start..]
            .find('}')
            .map(|e| start + e + 1)
            .unwrap_or(out.len());
        return Err(format!("unsubstituted placeholder {}", &out[start..end]));
    }
    Ok(out)
}

/// Create a STANDARD state machine, or update its definition if it exists.
/// Returns its ARN.
pub async fn ensure_state_machine(
    client: &Client,
    name: &str,
    definition: &str,
    role_arn: &str,
) -> Result<String, SfnError> {
    let created = client
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(role_arn)
        .r#type(StateMachineType::Standard)
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.state_machine_arn().to_string()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_state_machine_already_exists()) =>
        {
            let region = region_of(client);
            let account = role_arn.split(':').nth(4).unwrap_or_default();
            let arn = format!("arn:aws:states:{region}:{account}:stateMachine:{name}");
            client
                .update_state_machine()
                .state_machine_arn(&arn)
                .definition(definition)
                .send()
                .await
                .map_err(|e| SfnError {
                    op: "UpdateStateMachine",
                    region: region.clone(),
                    detail: DisplayErrorContext(&e).to_string(),
                })?;
            Ok(arn)
        }
        Err(e) => Err(SfnError {
            op: "CreateStateMachine",
            region: region_of(client),
            detail: DisplayErrorContext(&e).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_leftovers() {
        let t = r#"{"a":"${X}","b":"arn:${Y}::x"}"#;
        assert_eq!(
            render_definition(t, &[("X", "1"), ("Y", "us-east-1")]).unwrap(),
            r#"{"a":"1","b":"arn:us-east-1::x"}"#
        );
        assert_eq!(
            render_definition(t, &[("X", "1")]).unwrap_err(),
            "unsubstituted placeholder ${Y}"
        );
    }
}

/// Outcome of StartExecution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Started now, or the same execution (same name and input) is running.
    Running(String),
    /// An execution with this name exists and is closed, or has other input:
    /// it was started before; nothing new runs.
    AlreadyExists,
}

/// Start `name` on `state_machine_arn` (idempotent by name).
pub async fn start_execution(
    client: &Client,
    state_machine_arn: &str,
    name: &str,
    input: &str,
) -> Result<Started, SfnError> {
    match client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input)
        .send()
        .await
    {
        Ok(out) => Ok(Started::Running(out.execution_arn().to_string())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Ok(Started::AlreadyExists)
        }
        Err(e) => Err(SfnError {
            op: "StartExecution",
            region: region_of(client),
            detail: DisplayErrorContext(&e).to_string(),
        }),
    }
}

/// The execution ARN for a state machine ARN and an execution name.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// An execution's status, as the planner sees it.
pub async fn execution_status(
    client: &Client,
    execution_arn: &str,
) -> Result<crate::core::plan::ExecutionStatus, SfnError> {
    use crate::core::plan::ExecutionStatus as S;
    match client
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
    {
        Ok(d) => Ok(match d.status().as_str() {
            "RUNNING" | "PENDING_REDRIVE" => S::Running,
            "SUCCEEDED" => S::Succeeded,
            _ => S::Ended,
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) =>
        {
            Ok(S::NotStarted)
        }
        Err(e) => Err(SfnError {
            op: "DescribeExecution",
            region: region_of(client),
            detail: DisplayErrorContext(&e).to_string(),
        }),
    }
}

/// Outcome of a task callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Accepted,
    /// `TaskTimedOut` / `InvalidToken` / `TaskDoesNotExist`: the task was
    /// already closed (by an earlier callback, a timeout, or the execution
    /// ending). Record the token as done; do not retry.
    AlreadyClosed,
}

fn callback_result<E>(
    client: &Client,
    op: &'static str,
    r: Result<(), aws_sdk_sfn::error::SdkError<E>>,
) -> Result<Callback, SfnError>
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match r {
        Ok(()) => Ok(Callback::Accepted),
        Err(e)
            if matches!(
                e.as_service_error().and_then(|s| s.code()),
                Some("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist")
            ) =>
        {
            Ok(Callback::AlreadyClosed)
        }
        Err(e) => Err(SfnError {
            op,
            region: region_of(client),
            detail: DisplayErrorContext(&e).to_string(),
        }),
    }
}

/// SendTaskSuccess.
pub async fn send_task_success(
    client: &Client,
    token: &str,
    output: &str,
) -> Result<Callback, SfnError> {
    let r = client
        .send_task_success()
        .task_token(token)
        .output(output)
        .send()
        .await
        .map(|_| ());
    callback_result(client, "SendTaskSuccess", r)
}

/// SendTaskFailure.
pub async fn send_task_failure(
    client: &Client,
    token: &str,
    error: &str,
    cause: &str,
) -> Result<Callback, SfnError> {
    let r = client
        .send_task_failure()
        .task_token(token)
        .error(error)
        .cause(cause)
        .send()
        .await
        .map(|_| ());
    callback_result(client, "SendTaskFailure", r)
}

/// SendTaskHeartbeat.
pub async fn send_task_heartbeat(client: &Client, token: &str) -> Result<Callback, SfnError> {
    let r = client
        .send_task_heartbeat()
        .task_token(token)
        .send()
        .await
        .map(|_| ());
    callback_result(client, "SendTaskHeartbeat", r)
}
