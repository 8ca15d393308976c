//! The workflow's task tokens: the pending ones for a region, the list,
//! and the claim, extension and finish of one.

use super::{Bad, ControlTable, Item, SERVICE, decode_all, get_n, get_s, get_time, n, need, s};
use crate::aws::dynamo::PENDING_INDEX;
use crate::core::tokens::{TokenStatus, TokenView};
use crate::ports::PortError;
use crate::ports::store::{Page, TokenItem, Write};

fn token_from_item(it: &Item) -> Result<TokenItem, Bad> {
    let status = match need(get_s(it, "status"), "status")?.as_str() {
        "pending" => TokenStatus::Pending,
        "claimed" => TokenStatus::Claimed,
        "done" => TokenStatus::Done,
        "expired" => TokenStatus::Expired,
        other => return Err(Bad(format!("unknown token status {other:?}"))),
    };
    Ok(TokenItem {
        view: TokenView {
            id: need(get_s(it, "sk"), "sk")?,
            target_region: need(get_s(it, "target_region"), "target_region")?,
            step: need(get_s(it, "step"), "step")?,
            status,
            claimed_by: get_s(it, "claimed_by"),
            claim_until: get_n(it, "claim_until"),
            created_at: need(get_time(it, "created_at"), "created_at")?,
            timeout_ms: need(get_n(it, "timeout_seconds"), "timeout_seconds")? * 1000,
        },
        token: need(get_s(it, "token"), "token")?,
        execution_arn: need(get_s(it, "execution_arn"), "execution_arn")?,
        epoch: need(get_n(it, "epoch"), "epoch")?,
        note: get_s(it, "note"),
    })
}

impl ControlTable {
    pub(super) async fn query_pending_tokens(
        &self,
        region: &str,
        now: u64,
    ) -> Result<Vec<TokenItem>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("pending_for = :r")
                .expression_attribute_values(":r", s(region))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.fail("Query pending", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        Ok(decode_all(self, "token", &items, now, token_from_item))
    }

    pub(super) async fn query_tokens(
        &self,
        limit: usize,
        now: u64,
    ) -> Result<Page<TokenItem>, PortError> {
        let (items, truncated) = self.query_pk("TOKEN", true, Some(limit)).await?;
        Ok(Page {
            items: decode_all(self, "token", &items, now, token_from_item),
            truncated,
        })
    }

    pub(super) async fn send_claim(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression(
                "attribute_exists(pk) AND (#status = :pending OR (#status = :claimed AND (claim_until < :now OR claimed_by = :me)))",
            )
            .update_expression("SET #status = :claimed, claimed_by = :me, claim_until = :until, claimed_at = :now ADD claims :one")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now + claim_ms))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (claim)", r)
    }

    pub(super) async fn send_claim_extension(
        &self,
        id: &str,
        owner: &str,
        now: u64,
        claim_ms: u64,
    ) -> Result<Write, PortError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression("#status = :claimed AND claimed_by = :me")
            .update_expression("SET claim_until = :until")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now + claim_ms))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (extend)", r)
    }

    pub(super) async fn send_finish(
        &self,
        id: &str,
        status: TokenStatus,
        note: &str,
        now: u64,
    ) -> Result<Write, PortError> {
        let st = match status {
            TokenStatus::Done => "done",
            TokenStatus::Expired => "expired",
            TokenStatus::Pending | TokenStatus::Claimed => {
                return Err(PortError::malformed(
                    SERVICE,
                    "UpdateItem TOKEN (finish)",
                    &self.region,
                    format!("a token is finished as done or expired, not {status:?}"),
                ));
            }
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key("TOKEN", id)))
            .condition_expression(
                "attribute_exists(pk) AND #status <> :done AND #status <> :expired",
            )
            .update_expression(
                "SET #status = :st, note = :note, finished_at = :now REMOVE pending_for",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":expired", s("expired"))
            .expression_attribute_values(":st", s(st))
            .expression_attribute_values(":note", s(note))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        self.conditional("UpdateItem TOKEN (finish)", r)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn an_unknown_token_status_is_not_pending() {
        let mut it: Item = HashMap::from([
            ("sk".into(), s("x#prepare")),
            ("target_region".into(), s("us-west-2")),
            ("step".into(), s("prepare")),
            ("status".into(), s("lost")),
            ("created_at".into(), n(1)),
            ("timeout_seconds".into(), n(120)),
            ("token".into(), s("t")),
            (
                "execution_arn".into(),
                s("arn:aws:states:us-west-2:1:execution:m:x"),
            ),
            ("epoch".into(), n(2)),
        ]);
        assert!(token_from_item(&it).is_err());
        it.insert("status".into(), s("pending"));
        assert_eq!(
            token_from_item(&it).ok().map(|t| t.view.status),
            Some(TokenStatus::Pending)
        );
    }
}
