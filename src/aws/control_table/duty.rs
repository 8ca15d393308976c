//! The per-region duty item (`core::duty`): `DUTY` / `<region>`, with the
//! holding process, its instance name and a version every write raises.
//! Writes are conditional on the version (absent: on the item's absence),
//! like the record's.

use super::{Bad, ControlTable, Item, get_n, get_s, n, need, s};
use crate::core::duty::{DutyItem, DutyWrite};
use crate::ports::PortError;
use crate::ports::store::Write;

const DUTY: &str = "DUTY";

fn duty_from_item(it: &Item) -> Result<DutyItem, Bad> {
    Ok(DutyItem {
        holder: get_s(it, "holder").unwrap_or_default(),
        instance: get_s(it, "instance").unwrap_or_default(),
        version: need(get_n(it, "version"), "version")?,
    })
}

impl ControlTable {
    pub(super) async fn fetch_duty(&self, region: &str) -> Result<Option<DutyItem>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(DUTY, region)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem DUTY", e))?;
        match out.item() {
            None => Ok(None),
            Some(it) => duty_from_item(it)
                .map(Some)
                .map_err(|Bad(why)| self.malformed("GetItem DUTY", why)),
        }
    }

    pub(super) async fn send_duty(&self, w: &DutyWrite) -> Result<Write, PortError> {
        let next = w.expected.map_or(1, |v| v + 1);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some({
                let mut item = Self::key(DUTY, &w.region);
                item.extend([
                    ("holder".to_string(), s(&w.holder)),
                    ("instance".to_string(), s(&w.instance)),
                    ("version".to_string(), n(next)),
                ]);
                item
            }));
        put = match w.expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        let r = put.send().await;
        self.conditional("PutItem DUTY", r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_item_reads_with_an_empty_holder() {
        let mut it = ControlTable::key(DUTY, "us-west-2");
        it.insert("version".into(), n(3));
        assert_eq!(
            duty_from_item(&it).ok(),
            Some(DutyItem {
                holder: String::new(),
                instance: String::new(),
                version: 3
            })
        );
        it.remove("version");
        assert!(duty_from_item(&it).is_err());
    }
}
