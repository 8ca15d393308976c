//! Step Functions adapter: state machine bootstrap (the lab and first
//! deploys), and the [`Workflows`] port: executions and task callbacks.

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::StateMachineType;

use super::errors::port_error;
use crate::core::plan::ExecutionStatus;
use crate::ports::PortError;
use crate::ports::workflows::{Callback, Execution, Started, Workflows, arn_region, execution_arn};

const SERVICE: &str = "Step Functions";

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

/// A definition template kept a placeholder no substitution named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsubstituted placeholder {placeholder}")]
pub struct RenderError {
    /// The placeholder as written (`${Name}`).
    pub placeholder: String,
}

/// Render a definition template: `${Name}` placeholders, as CloudFormation's
/// `DefinitionSubstitutions` does. An unknown placeholder is an error, but
/// for the pseudo parameter `${AWS::Partition}`, which CloudFormation fills
/// itself: `aws` unless `substitutions` names it (the lab, moto and the
/// simulation are the `aws` partition).
pub fn render_definition(
    template: &str,
    substitutions: &[(&str, &str)],
) -> Result<String, RenderError> {
    let mut out = template.to_string();
    for (k, v) in substitutions {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out = out.replace("${AWS::Partition}", "aws");
    if let Some(start) = out.find("${") {
        let end = out[start..]
            .find('}')
            .map(|e| start + e + 1)
            .unwrap_or(out.len());
        return Err(RenderError {
            placeholder: out[start..end].to_string(),
        });
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
            // The role's ARN names the partition and the account.
            let partition = role_arn.split(':').nth(1).unwrap_or("aws");
            let account = role_arn.split(':').nth(4).unwrap_or_default();
            let arn = format!("arn:{partition}:states:{region}:{account}:stateMachine:{name}");
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

/// The [`Workflows`](crate::ports::Workflows) port over Step Functions, a
/// client per region (taken from each ARN; callbacks name the region).
pub struct AwsWorkflows {
    clients: std::sync::Arc<super::AwsClients>,
}

impl AwsWorkflows {
    pub fn new(clients: std::sync::Arc<super::AwsClients>) -> Self {
        Self { clients }
    }

    fn client_for(&self, arn: &str) -> Result<(Client, String), PortError> {
        let region = arn_region(arn).ok_or_else(|| {
            PortError::malformed(SERVICE, "ARN", "?", format!("{arn:?} names no region"))
        })?;
        Ok((self.clients.sfn(region), region.to_string()))
    }

    async fn callback<E>(
        &self,
        op: &'static str,
        region: &str,
        r: Result<(), SdkError<E, aws_sdk_sfn::config::http::HttpResponse>>,
    ) -> Result<Callback, PortError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
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
            Err(e) => Err(port_error(SERVICE, op, region, e)),
        }
    }
}

fn status_of(s: &aws_sdk_sfn::types::ExecutionStatus) -> ExecutionStatus {
    match s.as_str() {
        "RUNNING" | "PENDING_REDRIVE" => ExecutionStatus::Running,
        "SUCCEEDED" => ExecutionStatus::Succeeded,
        _ => ExecutionStatus::Ended,
    }
}

#[async_trait]
impl Workflows for AwsWorkflows {
    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<Started, PortError> {
        let (client, region) = self.client_for(state_machine_arn)?;
        match client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(out) => Ok(Started::Running {
                arn: out.execution_arn().to_string(),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                // Closed, or other input: say which, so the caller can tell
                // "started earlier" from a name collision.
                let arn = execution_arn(state_machine_arn, name);
                let existing = self.describe(&arn).await?;
                Ok(Started::Existing {
                    arn,
                    status: existing.status,
                    input: existing.input,
                })
            }
            Err(e) => Err(port_error(
                SERVICE,
                format!("StartExecution {name}"),
                region,
                e,
            )),
        }
    }

    async fn describe(&self, arn: &str) -> Result<Execution, PortError> {
        let (client, region) = self.client_for(arn)?;
        match client.describe_execution().execution_arn(arn).send().await {
            Ok(d) => Ok(Execution {
                status: status_of(d.status()),
                input: d.input().map(String::from),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) =>
            {
                Ok(Execution {
                    status: ExecutionStatus::NotStarted,
                    input: None,
                })
            }
            Err(e) => Err(port_error(SERVICE, "DescribeExecution", region, e)),
        }
    }

    async fn stop(&self, arn: &str, cause: &str) -> Result<(), PortError> {
        let (client, region) = self.client_for(arn)?;
        match client
            .stop_execution()
            .execution_arn(arn)
            .error("Superseded")
            .cause(cause)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) =>
            {
                Ok(())
            }
            Err(e) => Err(port_error(SERVICE, "StopExecution", region, e)),
        }
    }

    async fn send_task_success(
        &self,
        region: &str,
        token: &str,
        output: &str,
    ) -> Result<Callback, PortError> {
        let r = self
            .clients
            .sfn(region)
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await
            .map(|_| ());
        self.callback("SendTaskSuccess", region, r).await
    }

    async fn send_task_failure(
        &self,
        region: &str,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Callback, PortError> {
        let r = self
            .clients
            .sfn(region)
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ());
        self.callback("SendTaskFailure", region, r).await
    }

    async fn send_task_heartbeat(&self, region: &str, token: &str) -> Result<Callback, PortError> {
        let r = self
            .clients
            .sfn(region)
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(|_| ());
        self.callback("SendTaskHeartbeat", region, r).await
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
            render_definition("arn:${AWS::Partition}:states", &[]).unwrap(),
            "arn:aws:states"
        );
        assert_eq!(
            render_definition(
                "arn:${AWS::Partition}:states",
                &[("AWS::Partition", "aws-cn")]
            )
            .unwrap(),
            "arn:aws-cn:states"
        );
        let e = render_definition(t, &[("X", "1")]).unwrap_err();
        assert_eq!(e.placeholder, "${Y}");
        assert_eq!(e.to_string(), "unsubstituted placeholder ${Y}");
    }
}
