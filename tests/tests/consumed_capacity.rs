//! `kopter_dynamodb_consumed_capacity_units_total` counts what DynamoDB
//! says each item operation consumed. Against AWS's DynamoDB Local
//! (`scripts/test-dynamodb-local.sh`), which sizes items as DynamoDB does,
//! the units are checked exactly by the developer guide's rules: a write
//! is one unit per KB (rounded up), a strongly consistent read one unit
//! per 4 KB, an eventually consistent one half that. moto answers a fixed
//! number per call, so there only its presence is checked.

use aws_sdk_dynamodb::types::AttributeValue;
use kopter_runtime::metrics;
use kopter_tests::{TestEnv, dynamodb_endpoint};

fn units(table: &str, operation: &str, capacity: &str) -> f64 {
    metrics::runtime()
        .dynamodb_consumed
        .with_label_values(&[table, operation, capacity])
        .get()
}

#[tokio::test]
async fn item_operations_count_the_units_dynamodb_reports() {
    let env = TestEnv::new().await;
    let ddb = env.ctx.aws.dynamodb();
    let table = env.create_scratch_table("capacity-test").await;

    // 3,500 bytes of value + the names "pk", "body" and "a": 3.5 KB.
    let body = "x".repeat(3_500);
    ddb.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".into()))
        .item("body", AttributeValue::S(body))
        .send()
        .await
        .expect("put");
    ddb.get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("a".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get");
    ddb.get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .expect("get, eventually consistent");

    let (put, get) = (
        units(&table, "PutItem", "write"),
        units(&table, "GetItem", "read"),
    );
    if dynamodb_endpoint().is_some() {
        // DynamoDB Local: 3.5 KB written is 4 write units; read strongly
        // (1 unit per 4 KB) and eventually (half): 1 + 0.5.
        assert_eq!(put, 4.0, "PutItem write units");
        assert_eq!(get, 1.5, "GetItem read units");
    } else {
        assert!(put > 0.0, "moto reported no write units: {put}");
        assert!(get > 0.0, "moto reported no read units: {get}");
    }
    // Reads are never counted as writes and the reverse.
    assert_eq!(units(&table, "PutItem", "read"), 0.0);
    assert_eq!(units(&table, "GetItem", "write"), 0.0);
}
