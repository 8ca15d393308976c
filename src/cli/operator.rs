//! Who an operator's change is recorded under.
//!
//! The AWS identity of the credentials in use (STS `GetCallerIdentity`)
//! when it can be had: that is who IAM lets make the change, and what
//! CloudTrail shows for the same minutes. A name from `--operator` (default
//! `$USER`) is kept beside it, since a shared on-call role does not say
//! which person assumed it: `alice (arn:aws:sts::123:assumed-role/OnCall/s)`.
//! When STS cannot be reached the name alone is recorded, with a warning;
//! with neither, the command refuses: a change is never recorded as by
//! "unknown".

use crate::ports::identity::Identity;

/// Why nobody could be named.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot tell who is acting: STS GetCallerIdentity failed and no --operator was given (nor $USER): pass --operator NAME"
)]
pub struct Anonymous {
    #[source]
    pub sts: crate::ports::PortError,
}

/// The operator to record (without the `operator:` prefix the executor adds).
pub async fn identify(identity: &dyn Identity, name: Option<&str>) -> Result<String, Anonymous> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    match (identity.caller_arn().await, name) {
        (Ok(arn), Some(n)) if n != arn => Ok(format!("{n} ({arn})")),
        (Ok(arn), _) => Ok(arn),
        (Err(e), Some(n)) => {
            eprintln!(
                "warning: cannot confirm your AWS identity ({}); recording the operator as {n:?} from --operator/$USER",
                crate::error_chain(&e)
            );
            Ok(n.to_string())
        }
        (Err(sts), None) => Err(Anonymous { sts }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ErrorKind, PortError};

    struct Fixed(Option<&'static str>);

    #[async_trait::async_trait]
    impl Identity for Fixed {
        async fn caller_arn(&self) -> Result<String, PortError> {
            self.0.map(String::from).ok_or_else(|| {
                PortError::new(
                    "STS",
                    "GetCallerIdentity",
                    "us-east-1",
                    ErrorKind::Transport,
                    "no route",
                )
            })
        }
    }

    #[tokio::test]
    async fn the_aws_identity_wins_and_the_name_stays_beside_it() {
        let arn = "arn:aws:sts::123456789012:assumed-role/OnCall/s1";
        assert_eq!(
            identify(&Fixed(Some(arn)), Some("alice")).await.unwrap(),
            format!("alice ({arn})")
        );
        assert_eq!(identify(&Fixed(Some(arn)), None).await.unwrap(), arn);
        assert_eq!(identify(&Fixed(Some(arn)), Some(" ")).await.unwrap(), arn);
        assert_eq!(
            identify(&Fixed(None), Some("alice")).await.unwrap(),
            "alice"
        );
        let e = identify(&Fixed(None), None).await.unwrap_err();
        assert!(e.to_string().contains("--operator"), "{e}");
    }
}
