//! A record of the DynamoDB `Query` calls a client sends, for tests that
//! assert what a piece of code reads (issue 23: which partitions, how
//! often, with which sort-key prefix).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::query::QueryInput;

/// One `Query`: its table, index and string expression attribute values
/// (`:pk`, `:prefix`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedQuery {
    pub table: String,
    pub index: Option<String>,
    pub values: BTreeMap<String, String>,
}

impl LoggedQuery {
    /// A string value (`":pk"`), empty when the query has none.
    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }
}

/// Every `Query` sent by the clients made with [`QueryLog::client`], in
/// order.
#[derive(Debug, Clone, Default)]
pub struct QueryLog(Arc<Mutex<Vec<LoggedQuery>>>);

impl QueryLog {
    /// A client like `base` whose queries this log records.
    pub fn client(&self, base: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            base.config().to_builder().interceptor(self.clone()).build(),
        )
    }

    /// The queries so far.
    pub fn queries(&self) -> Vec<LoggedQuery> {
        self.0.lock().expect("query log").clone()
    }

    /// The queries so far of one table.
    pub fn of_table(&self, table: &str) -> Vec<LoggedQuery> {
        self.queries()
            .into_iter()
            .filter(|q| q.table == table)
            .collect()
    }
}

impl Intercept for QueryLog {
    fn name(&self) -> &'static str {
        "QueryLog"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(q) = context.input().downcast_ref::<QueryInput>() {
            let values = q
                .expression_attribute_values()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                .collect();
            self.0.lock().expect("query log").push(LoggedQuery {
                table: q.table_name().unwrap_or_default().to_owned(),
                index: q.index_name().map(str::to_owned),
                values,
            });
        }
        Ok(())
    }
}
