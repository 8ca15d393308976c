//! The journal: one item per event, newest first by its sort key.

use super::{Bad, ControlTable, Item, decode_all, get_n, get_s, get_time, n, need, rfc3339, s};
use crate::ports::PortError;
use crate::ports::store::{Event, Page, ttl_for};

fn event_from_item(it: &Item) -> Result<Event, Bad> {
    Ok(Event {
        at: need(get_time(it, "at"), "at")?,
        who: need(get_s(it, "region"), "region")?,
        kind: need(get_s(it, "kind"), "kind")?,
        epoch: get_n(it, "epoch"),
        detail: get_s(it, "detail").unwrap_or_default(),
    })
}

impl ControlTable {
    pub(super) async fn send_event(&self, e: &Event) -> Result<(), PortError> {
        let mut item = Self::key(
            "EVENT",
            &format!(
                "{}#{}#{}#{:04x}",
                rfc3339(e.at),
                e.who,
                e.kind,
                std::process::id() & 0xffff
            ),
        );
        item.extend([
            ("at".to_string(), s(rfc3339(e.at))),
            ("region".to_string(), s(&e.who)),
            ("kind".to_string(), s(&e.kind)),
            ("detail".to_string(), s(&e.detail)),
            ("ttl".to_string(), n(ttl_for(e.at))),
        ]);
        if let Some(ep) = e.epoch {
            item.insert("epoch".into(), n(ep));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|err| self.fail("PutItem EVENT", err))?;
        Ok(())
    }

    pub(super) async fn query_events(
        &self,
        limit: usize,
        now: u64,
    ) -> Result<Page<Event>, PortError> {
        // The sort key starts with the RFC 3339 time: newest first is one
        // bounded query, not a read of the whole journal.
        let (items, truncated) = self.query_pk("EVENT", true, Some(limit)).await?;
        let mut events = decode_all(self, "event", &items, now, event_from_item);
        events.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
        Ok(Page {
            items: events,
            truncated,
        })
    }
}
