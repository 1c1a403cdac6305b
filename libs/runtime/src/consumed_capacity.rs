//! DynamoDB capacity units as DynamoDB itself counts them.
//!
//! The [`ConsumedCapacity`] interceptor, on every DynamoDB client of a
//! process ([`crate::aws::AwsContext::dynamodb_with`]), asks each item
//! operation for `ReturnConsumedCapacity = TOTAL` (unless the caller asked
//! for more) and adds the `ConsumedCapacity` of each successful answer to
//! `kopter_dynamodb_consumed_capacity_units_total{table,operation,capacity}`
//! (`capacity` = `read` or `write`, by operation). On-demand tables are
//! billed per request unit, and one read/write request unit is one
//! read/write capacity unit of the answer, so the counter is what the
//! tables cost (see "Read/write capacity unit consumption" in the DynamoDB
//! developer guide, and `docs/benchmarks.md` for the price per unit).
//!
//! Not counted: a request that fails (a `ConditionalCheckFailedException`
//! still consumes write units, but its error does not say how many) and
//! control-plane calls (`CreateTable`, `DescribeTable`…), which are not
//! billed per unit. Asking costs nothing: the units are in the answer.

use aws_sdk_dynamodb::operation::{
    batch_get_item::{BatchGetItemInput, BatchGetItemOutput},
    batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput},
    delete_item::{DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemInput, GetItemOutput},
    put_item::{PutItemInput, PutItemOutput},
    query::{QueryInput, QueryOutput},
    scan::{ScanInput, ScanOutput},
    transact_get_items::{TransactGetItemsInput, TransactGetItemsOutput},
    transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput},
    update_item::{UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{ConsumedCapacity as Units, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut, Output,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::metrics;

/// The interceptor: asks for and counts consumed capacity (module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumedCapacity;

/// Sets `ReturnConsumedCapacity` to `TOTAL` on `input` if it is an item
/// operation that did not ask for anything; returns whether it is one.
fn ask(input: &mut aws_smithy_runtime_api::client::interceptors::context::Input) -> bool {
    macro_rules! ask_of {
        ($($t:ty),*) => {
            $(
                if let Some(i) = input.downcast_mut::<$t>() {
                    i.return_consumed_capacity.get_or_insert(ReturnConsumedCapacity::Total);
                    return true;
                }
            )*
        };
    }
    ask_of!(
        GetItemInput,
        PutItemInput,
        UpdateItemInput,
        DeleteItemInput,
        QueryInput,
        ScanInput,
        BatchGetItemInput,
        BatchWriteItemInput,
        TransactGetItemsInput,
        TransactWriteItemsInput
    );
    false
}

/// `(operation, capacity, consumed)` of an item operation's output: the
/// operation's name, `read` or `write`, and the units per table.
fn consumed(output: &Output) -> Option<(&'static str, &'static str, Vec<&Units>)> {
    macro_rules! one {
        ($t:ty, $op:literal, $kind:literal) => {
            if let Some(o) = output.downcast_ref::<$t>() {
                return Some(($op, $kind, o.consumed_capacity().into_iter().collect()));
            }
        };
    }
    macro_rules! many {
        ($t:ty, $op:literal, $kind:literal) => {
            if let Some(o) = output.downcast_ref::<$t>() {
                return Some(($op, $kind, o.consumed_capacity().iter().collect()));
            }
        };
    }
    one!(GetItemOutput, "GetItem", "read");
    one!(QueryOutput, "Query", "read");
    one!(ScanOutput, "Scan", "read");
    one!(PutItemOutput, "PutItem", "write");
    one!(UpdateItemOutput, "UpdateItem", "write");
    one!(DeleteItemOutput, "DeleteItem", "write");
    many!(BatchGetItemOutput, "BatchGetItem", "read");
    many!(BatchWriteItemOutput, "BatchWriteItem", "write");
    many!(TransactGetItemsOutput, "TransactGetItems", "read");
    many!(TransactWriteItemsOutput, "TransactWriteItems", "write");
    None
}

impl Intercept for ConsumedCapacity {
    fn name(&self) -> &'static str {
        "KopterConsumedCapacity"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        ask(context.input_mut());
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        if let Some((op, kind, units)) = consumed(output) {
            for u in units {
                let table = u.table_name().unwrap_or("unknown");
                if let Some(n) = u.capacity_units().filter(|n| *n > 0.0) {
                    metrics::runtime()
                        .dynamodb_consumed
                        .with_label_values(&[table, op, kind])
                        .inc_by(n);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::interceptors::context::Input;

    #[test]
    fn item_operations_ask_for_the_total_and_others_are_left_alone() {
        let mut put = Input::erase(PutItemInput::builder().table_name("t").build().unwrap());
        assert!(ask(&mut put));
        let put = put.downcast::<PutItemInput>().unwrap();
        assert_eq!(
            put.return_consumed_capacity,
            Some(ReturnConsumedCapacity::Total)
        );

        // A caller's own choice (per index) is kept.
        let mut query = Input::erase(
            QueryInput::builder()
                .table_name("t")
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .build()
                .unwrap(),
        );
        assert!(ask(&mut query));
        let query = query.downcast::<QueryInput>().unwrap();
        assert_eq!(
            query.return_consumed_capacity,
            Some(ReturnConsumedCapacity::Indexes)
        );

        let mut describe = Input::erase(
            aws_sdk_dynamodb::operation::describe_table::DescribeTableInput::builder()
                .table_name("t")
                .build()
                .unwrap(),
        );
        assert!(!ask(&mut describe));
    }

    #[test]
    fn outputs_say_their_operation_kind_and_units_per_table() {
        let units = |t: &str, n: f64| Units::builder().table_name(t).capacity_units(n).build();
        let out = Output::erase(
            BatchWriteItemOutput::builder()
                .consumed_capacity(units("kopter-x-audit", 3.0))
                .consumed_capacity(units("kopter-x-feed", 1.0))
                .build(),
        );
        let (op, kind, u) = consumed(&out).unwrap();
        assert_eq!((op, kind), ("BatchWriteItem", "write"));
        let got: Vec<_> = u
            .iter()
            .map(|u| (u.table_name().unwrap(), u.capacity_units().unwrap()))
            .collect();
        assert_eq!(got, [("kopter-x-audit", 3.0), ("kopter-x-feed", 1.0)]);

        let out = Output::erase(
            QueryOutput::builder()
                .consumed_capacity(units("kopter-x-cost", 0.5))
                .build(),
        );
        let (op, kind, u) = consumed(&out).unwrap();
        assert_eq!((op, kind, u.len()), ("Query", "read", 1));

        // Asked but not answered (a DynamoDB that does not count): nothing.
        let out = Output::erase(GetItemOutput::builder().build());
        assert_eq!(consumed(&out).unwrap().2.len(), 0);
    }
}
