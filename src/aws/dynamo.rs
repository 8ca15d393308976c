//! DynamoDB adapter: table bootstrap (the lab and first deploys) and, in
//! the control-loop modules, the control table's items.
//!
//! Control table layout (one table, a global table in production):
//! - `pk = "CONTROL", sk = "CONTROL"`: the control record.
//! - `pk = "VOTE", sk = <region>`: each daemon's latest view; one query reads all.
//! - `pk = "TOKEN", sk = <execution>#<step>`: task tokens; `pending_for` is
//!   set only while a token waits, which makes the `pending` index sparse so
//!   a daemon finds its work with a query, never a scan.
//! - `pk = "EVENT", sk = <time>#<who>#<what>`: the append-only journal.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

/// Name of the sparse index over pending task tokens.
pub const PENDING_INDEX: &str = "pending";
/// Name of the seed's routing-table index.
pub const TRAFFIC_CLASS_INDEX: &str = "trafficClass-index";

/// A DynamoDB call failed.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {op} on {table} in {region}: {detail}")]
pub struct DynamoError {
    pub op: &'static str,
    pub table: String,
    pub region: String,
    pub detail: String,
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

fn index(name: &str, hash: &str, range: Option<&str>) -> GlobalSecondaryIndex {
    let mut b = GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        );
    if let Some(r) = range {
        b = b.key_schema(key(r, KeyType::Range));
    }
    b.build().expect("index fields are set")
}

/// Whether a create call made a table or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// Create the control table (idempotent).
pub async fn create_control_table(client: &Client, table: &str) -> Result<Created, DynamoError> {
    let req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("pending_for"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(PENDING_INDEX, "pending_for", Some("sk")));
    finish_create(client, table, req.send().await)
}

/// Create the seed's routing table: `configKey` hash key and a
/// `trafficClass` index (idempotent).
pub async fn create_routing_table(client: &Client, table: &str) -> Result<Created, DynamoError> {
    let req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("configKey"))
        .attribute_definitions(attr("trafficClass"))
        .key_schema(key("configKey", KeyType::Hash))
        .global_secondary_indexes(index(TRAFFIC_CLASS_INDEX, "trafficClass", None));
    finish_create(client, table, req.send().await)
}

fn finish_create<O>(
    client: &Client,
    table: &str,
    result: Result<
        O,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::create_table::CreateTableError,
        >,
    >,
) -> Result<Created, DynamoError> {
    match result {
        Ok(_) => Ok(Created::New),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(Created::Existing)
        }
        Err(e) => Err(DynamoError {
            op: "CreateTable",
            table: table.into(),
            region: client
                .config()
                .region()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            detail: DisplayErrorContext(&e).to_string(),
        }),
    }
}
