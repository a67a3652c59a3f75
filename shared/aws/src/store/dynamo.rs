//! The store on DynamoDB (see the module docs of [`super`] for the key design).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};
use serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value;
use turnstile_core::{DeploymentId, Gate, GroupKey, InstanceId, Key, Millis};

use super::*;
use crate::error::{store_build_error, store_error};

/// The AWS operations of the store's reads (`load`, and the index queries `due`, `in_flight`,
/// `overflowed`), which the functions and the operator's command line make (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the template does not allow what the caller needs.
pub const READ_AWS_CALLS: &[&str] = &["dynamodb:BatchGetItem", "dynamodb:Query"];

/// The AWS operations only the runner makes (`commit`, `deployment_group`); checked as
/// [`READ_AWS_CALLS`] is.
pub const RUNNER_AWS_CALLS: &[&str] = &["dynamodb:GetItem", "dynamodb:TransactWriteItems"];

/// The AWS operations of [`DynamoStore::create_table`], for tests and the local cloud only (the
/// template creates the table in AWS); checked as [`READ_AWS_CALLS`] is.
pub const SETUP_AWS_CALLS: &[&str] = &["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"];

const PK: &str = "pk";
const SK: &str = "sk";
const VER: &str = "ver";
const REC: &str = "rec";
const TTL: &str = "ttl";
const INFLIGHT: &str = "asg_inflight";
const SHARD: &str = "due_shard";
const WAKE: &str = "wake";
const OVERFLOW: &str = "overflow_group";
const OVERFLOW_SINCE: &str = "overflow_since";
const READY_SHARD: &str = "ready_shard";
const READY_KEY: &str = "ready_key";
const READY_VALUE: &str = "ready_value";
pub const INFLIGHT_INDEX: &str = "inflight";
pub const DUE_INDEX: &str = "due";
pub const OVERFLOW_INDEX: &str = "overflow";
pub const READY_INDEX: &str = "ready";
/// DynamoDB's limit of items in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// DynamoDB's limit on one item, names and values together [aws-behaviour §5.3].
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// An item's size as DynamoDB counts it for its 400 KB limit [aws-behaviour §5.3]: each
/// attribute's name plus its value; strings and binaries by their bytes, numbers by about one
/// byte per two significant digits plus one, lists and maps 3 bytes plus one byte and the size
/// of each element (a map's element counting its name too), booleans and nulls 1 byte.
pub fn item_size_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n.trim_start_matches(['-', '0', '.']).replace('.', "");
            digits.trim_end_matches('0').len().div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(xs) => xs.iter().map(String::len).sum(),
        AttributeValue::Ns(xs) => xs
            .iter()
            .map(|n| value_size(&AttributeValue::N(n.clone())))
            .sum(),
        AttributeValue::Bs(xs) => xs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(xs) => 3 + xs.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 0,
    }
}

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with its indexes and TTL (the SAM template does the same in AWS).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| store_build_error("CreateTable", e))
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| store_build_error("CreateTable", e))
        };
        let keys_only = Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build();
        let inflight = GlobalSecondaryIndex::builder()
            .index_name(INFLIGHT_INDEX)
            .key_schema(key(INFLIGHT, KeyType::Hash)?)
            .key_schema(key(PK, KeyType::Range)?)
            .projection(keys_only.clone())
            .build()
            .map_err(|e| store_build_error("CreateTable", e))?;
        let due = GlobalSecondaryIndex::builder()
            .index_name(DUE_INDEX)
            .key_schema(key(SHARD, KeyType::Hash)?)
            .key_schema(key(WAKE, KeyType::Range)?)
            .projection(keys_only.clone())
            .build()
            .map_err(|e| store_build_error("CreateTable", e))?;
        let overflow = GlobalSecondaryIndex::builder()
            .index_name(OVERFLOW_INDEX)
            .key_schema(key(OVERFLOW, KeyType::Hash)?)
            .key_schema(key(OVERFLOW_SINCE, KeyType::Range)?)
            .projection(keys_only)
            .build()
            .map_err(|e| store_build_error("CreateTable", e))?;
        let ready = GlobalSecondaryIndex::builder()
            .index_name(READY_INDEX)
            .key_schema(key(READY_SHARD, KeyType::Hash)?)
            .key_schema(key(PK, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes(READY_KEY)
                    .non_key_attributes(READY_VALUE)
                    .build(),
            )
            .build()
            .map_err(|e| store_build_error("CreateTable", e))?;
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK, ScalarAttributeType::S)?)
            .attribute_definitions(attr(SK, ScalarAttributeType::S)?)
            .attribute_definitions(attr(INFLIGHT, ScalarAttributeType::S)?)
            .attribute_definitions(attr(SHARD, ScalarAttributeType::S)?)
            .attribute_definitions(attr(WAKE, ScalarAttributeType::N)?)
            .attribute_definitions(attr(OVERFLOW, ScalarAttributeType::S)?)
            .attribute_definitions(attr(OVERFLOW_SINCE, ScalarAttributeType::N)?)
            .attribute_definitions(attr(READY_SHARD, ScalarAttributeType::S)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(inflight)
            .global_secondary_indexes(due)
            .global_secondary_indexes(overflow)
            .global_secondary_indexes(ready)
            .send()
            .await
            .map_err(|e| store_error("CreateTable", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL)
                    .enabled(true)
                    .build()
                    .map_err(|e| store_build_error("UpdateTimeToLive", e))?,
            )
            .send()
            .await
            .map_err(|e| store_error("UpdateTimeToLive", e))?;
        Ok(())
    }

    fn item_key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
    }

    fn sk(key: &Key) -> &'static str {
        match key {
            Key::Instance(_) => "I",
            Key::Group(_) => "G",
        }
    }

    fn record_item(
        key: &Key,
        record: &Record,
        version: u64,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let pk = pk(key);
        // The record as one JSON string, not a DynamoDB map: a group record lists up to 1,500
        // instances, and as a map each is a nested attribute that DynamoDB, the SDK and serde
        // each parse and build one by one on every read and write (docs/design.md "Bounded
        // group records"). As text it is one attribute of about the same size.
        let rec = serde_json::to_string(record)
            .map(AttributeValue::S)
            .map_err(|e| StoreError::Corrupt {
                key: pk.clone(),
                reason: e.to_string(),
            })?;
        let mut item = Self::item_key(pk.clone(), Self::sk(key));
        item.insert(VER.into(), n(version));
        item.insert(REC.into(), rec);
        if let Some(asg) = in_flight_asg(record) {
            item.insert(INFLIGHT.into(), s(asg));
        }
        if let Some(w) = wake_of(record) {
            item.insert(SHARD.into(), s(shard_of(&pk).to_string()));
            item.insert(WAKE.into(), n(w.0));
        }
        if let Some(t) = ttl_of(record) {
            item.insert(TTL.into(), n(t));
        }
        if let Some((group, since)) = overflow_of(record) {
            item.insert(OVERFLOW.into(), s(group));
            item.insert(OVERFLOW_SINCE.into(), n(since.0));
        }
        if let Some(tag) = ready_of(record) {
            item.insert(READY_SHARD.into(), s(ready_shard(&pk)));
            item.insert(READY_KEY.into(), s(&tag.key));
            item.insert(READY_VALUE.into(), s(&tag.value));
        }
        let bytes = item_size_bytes(&item);
        if bytes > MAX_ITEM_BYTES {
            // DynamoDB would refuse the whole transaction with a ValidationException that
            // names no item; this names the record.
            return Err(StoreError::TooLarge { key: pk, bytes });
        }
        Ok(item)
    }

    /// A record as it would be stored, for size checks in tests.
    pub fn item_of(
        key: &Key,
        record: &Record,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        Self::record_item(key, record, 1)
    }

    fn version_condition(version: u64) -> (String, Option<(String, AttributeValue)>) {
        if version == 0 {
            (format!("attribute_not_exists({PK})"), None)
        } else {
            (format!("{VER} = :v"), Some((":v".to_owned(), n(version))))
        }
    }

    /// A stored item back into its record and version: what every read does, public for the
    /// fuzz target. A corrupt item is an error naming it, never a panic.
    pub fn decode_item(
        item: &HashMap<String, AttributeValue>,
    ) -> Result<(Key, Record, u64), StoreError> {
        let pk = match item.get(PK) {
            Some(AttributeValue::S(p)) => p.clone(),
            _ => {
                return Err(StoreError::Corrupt {
                    key: "?".into(),
                    reason: "no pk".into(),
                });
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            key: pk.clone(),
            reason,
        };
        let key = key_of(&pk).ok_or_else(|| corrupt("not a record key".into()))?;
        let version = match item.get(VER) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|e| corrupt(format!("ver: {e}")))?,
            _ => return Err(corrupt("no ver".into())),
        };
        let record: Record = match item.get(REC) {
            Some(AttributeValue::S(text)) => {
                serde_json::from_str(text).map_err(|e| corrupt(format!("rec: {e}")))?
            }
            // Items written before records were stored as text hold a DynamoDB map.
            Some(map @ AttributeValue::M(_)) => {
                from_attribute_value(map.clone()).map_err(|e| corrupt(format!("rec: {e}")))?
            }
            Some(_) => return Err(corrupt("rec is neither text nor a map".into())),
            None => return Err(corrupt("no rec".into())),
        };
        Ok((key, record, version))
    }

    /// The transaction for a commit: each record conditional on its version, the event id
    /// conditional on being new, the index entries; and where the event id's item is in it (a
    /// failed condition there means the event was processed before).
    fn transact_items(
        &self,
        c: &Commit,
    ) -> Result<(Vec<TransactWriteItem>, Option<usize>), StoreError> {
        let mut items = Vec::new();
        let mut event_index = None;
        for (key, record, version) in &c.writes {
            let (cond, value) = Self::version_condition(*version);
            let item = match record {
                Some(r) => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(Self::record_item(key, r, version + 1)?))
                        .condition_expression(cond)
                        .set_expression_attribute_values(
                            value.map(|(k, v)| HashMap::from([(k, v)])),
                        )
                        .build()
                        .map_err(|e| store_build_error("TransactWriteItems", e))?;
                    TransactWriteItem::builder().put(put).build()
                }
                None => {
                    let del = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(Self::item_key(pk(key), Self::sk(key))))
                        .condition_expression(cond)
                        .set_expression_attribute_values(
                            value.map(|(k, v)| HashMap::from([(k, v)])),
                        )
                        .build()
                        .map_err(|e| store_build_error("TransactWriteItems", e))?;
                    TransactWriteItem::builder().delete(del).build()
                }
            };
            items.push(item);
        }
        if let Some(e) = &c.event {
            let mut item = Self::item_key(format!("E#{e}"), "E");
            item.insert(TTL.into(), n(c.now.0 / 1000 + EVENT_RETENTION_SECS));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(format!("attribute_not_exists({PK})"))
                .build()
                .map_err(|e| store_build_error("TransactWriteItems", e))?;
            event_index = Some(items.len());
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (d, g) in &c.deployments {
            let mut item = Self::item_key(format!("D#{d}"), "D");
            item.insert("app".into(), s(g.application.clone()));
            item.insert("dg".into(), s(g.deployment_group.clone()));
            item.insert(
                TTL.into(),
                n(c.now.0 / 1000 + DEPLOYMENT_INDEX_RETENTION_SECS),
            );
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| store_build_error("TransactWriteItems", e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Permanent {
                op: "TransactWriteItems",
                source: format!(
                    "{} items exceed DynamoDB's {MAX_TRANSACTION_ITEMS} per transaction",
                    items.len()
                )
                .into(),
            });
        }
        Ok((items, event_index))
    }

    async fn query_keys(
        &self,
        index: &str,
        condition: &str,
        values: HashMap<String, AttributeValue>,
        names: HashMap<String, String>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        // Only the key is read, and no more items than asked for: without a page limit a
        // query for the one longest-waiting instance read the whole overflow (1,000 items,
        // ~50 ms on DynamoDB Local) every time a place freed.
        let mut names = names;
        names.insert("#pk".to_owned(), PK.to_owned());
        loop {
            let page_limit = i32::try_from(limit.saturating_sub(out.len()))
                .ok()
                .filter(|l| *l > 0);
            let q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(condition)
                .projection_expression("#pk")
                .set_limit(page_limit)
                .set_expression_attribute_values(Some(values.clone()))
                .set_expression_attribute_names(Some(names.clone()))
                .set_exclusive_start_key(start.take());
            let page = q.send().await.map_err(|e| store_error("Query", e))?;
            for item in page.items() {
                if let Some(AttributeValue::S(p)) = item.get(PK) {
                    out.push(p.clone());
                }
            }
            match page.last_evaluated_key {
                Some(k) if out.len() < limit => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

impl Store for DynamoStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let mut out = Loaded::default();
        for k in keys {
            out.versions.insert(k.clone(), 0);
            match k {
                Key::Instance(i) => {
                    out.world.instances.insert(i.clone(), None);
                }
                Key::Group(g) => {
                    out.world.groups.insert(g.clone(), None);
                }
            }
        }
        for chunk in keys.chunks(100) {
            let mut pending = KeysAndAttributes::builder()
                .consistent_read(true)
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|k| Self::item_key(pk(k), Self::sk(k)))
                        .collect(),
                ))
                .build()
                .map_err(|e| store_build_error("BatchGetItem", e))?;
            for attempt in 0..8u32 {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                for item in resp
                    .responses
                    .as_ref()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let (key, record, version) = Self::decode_item(item)?;
                    out.versions.insert(key.clone(), version);
                    match (key, record) {
                        (Key::Instance(i), Record::Instance(r)) => {
                            out.world.instances.insert(i, Some(r));
                        }
                        (Key::Group(g), Record::Group(r)) => {
                            out.world.groups.insert(g, Some(r));
                        }
                        (k, _) => {
                            return Err(StoreError::Corrupt {
                                key: pk(&k),
                                reason: "record kind does not match its key".into(),
                            });
                        }
                    }
                }
                match resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                {
                    Some(rest) if !rest.keys().is_empty() => {
                        pending = rest;
                        tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, c: Commit) -> Result<(), StoreError> {
        if c.is_empty() {
            return Ok(());
        }
        let (items, event_index) = self.transact_items(&c)?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
                    e.as_service_error()
                {
                    let reasons = t.cancellation_reasons();
                    let failed = |i: usize| {
                        reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                    };
                    if let (Some(i), Some(ev)) = (event_index, &c.event)
                        && failed(i)
                    {
                        return Err(StoreError::Duplicate(ev.clone()));
                    }
                    if reasons.iter().any(|r| {
                        matches!(
                            r.code(),
                            Some("ConditionalCheckFailed" | "TransactionConflict")
                        )
                    }) {
                        return Err(StoreError::Conflict);
                    }
                }
                Err(store_error("TransactWriteItems", e))
            }
        }
    }

    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Key>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..DUE_SHARDS {
            let values = HashMap::from([
                (":s".to_owned(), s(shard.to_string())),
                (":now".to_owned(), n(now.0)),
            ]);
            let names = HashMap::from([("#w".to_owned(), WAKE.to_owned())]);
            let pks = self
                .query_keys(
                    DUE_INDEX,
                    &format!("{SHARD} = :s AND #w <= :now"),
                    values,
                    names,
                    limit.saturating_sub(out.len()),
                )
                .await?;
            for p in pks {
                if let Some(k) = key_of(&p) {
                    out.push(k);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn in_flight(&self, asg: &str) -> Result<Vec<InstanceId>, StoreError> {
        let values = HashMap::from([(":a".to_owned(), s(asg))]);
        let pks = self
            .query_keys(
                INFLIGHT_INDEX,
                &format!("{INFLIGHT} = :a"),
                values,
                HashMap::new(),
                usize::MAX,
            )
            .await?;
        Ok(pks
            .into_iter()
            .filter_map(|p| p.strip_prefix("I#").map(|i| InstanceId(i.to_owned())))
            .collect())
    }

    async fn overflowed(
        &self,
        group: &GroupKey,
        limit: usize,
    ) -> Result<Vec<InstanceId>, StoreError> {
        let values = HashMap::from([(":g".to_owned(), s(pk(&Key::Group(group.clone()))))]);
        let pks = self
            .query_keys(
                OVERFLOW_INDEX,
                &format!("{OVERFLOW} = :g"),
                values,
                HashMap::new(),
                limit,
            )
            .await?;
        Ok(pks
            .into_iter()
            .filter_map(|p| p.strip_prefix("I#").map(|i| InstanceId(i.to_owned())))
            .collect())
    }

    async fn awaiting_ready(&self, limit: usize) -> Result<Vec<(InstanceId, Gate)>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            while out.len() < limit {
                let page_limit = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(READY_INDEX)
                    .key_condition_expression("#s = :s")
                    .expression_attribute_names("#s", READY_SHARD)
                    .expression_attribute_values(":s", s(format!("R{shard}")))
                    .limit(page_limit)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| store_error("Query", e))?;
                for item in page.items() {
                    let text = |name: &str| match item.get(name) {
                        Some(AttributeValue::S(v)) => Some(v.clone()),
                        _ => None,
                    };
                    let instance = text(PK).and_then(|p| p.strip_prefix("I#").map(str::to_owned));
                    if let (Some(i), Some(key), Some(value)) =
                        (instance, text(READY_KEY), text(READY_VALUE))
                    {
                        out.push((InstanceId(i), Gate { key, value }));
                    }
                }
                match page.last_evaluated_key {
                    Some(k) => start = Some(k),
                    None => break,
                }
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn deployment_group(&self, d: &DeploymentId) -> Result<Option<GroupKey>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(format!("D#{d}"), "D")))
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        let Some(item) = resp.item else {
            return Ok(None);
        };
        match (item.get("app"), item.get("dg")) {
            (Some(AttributeValue::S(a)), Some(AttributeValue::S(g))) => {
                Ok(Some(GroupKey::new(a, g)))
            }
            _ => Err(StoreError::Corrupt {
                key: format!("D#{d}"),
                reason: "no app/dg".into(),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use turnstile_core::{Gate, Group};

    #[test]
    fn item_size_counts_names_and_values_as_dynamodb_does() {
        let item = HashMap::from([
            ("pk".to_owned(), s("abc")),    // 2 + 3
            ("n".to_owned(), n(1_234_567)), // 1 + 7 digits → 4 + 1
            (
                "l".to_owned(),
                AttributeValue::L(vec![s("xy"), AttributeValue::Bool(true)]),
            ), // 1 + 3 + (1+2) + (1+1)
        ]);
        assert_eq!(item_size_bytes(&item), 5 + 6 + 9);
    }

    fn busy_group(n: u64) -> (Key, Record) {
        let key = GroupKey::new("app0", "dg0");
        let gate = Gate {
            key: "gate-0".into(),
            value: "open".into(),
        };
        let mut g = Group::new(key.clone(), gate);
        for i in 0..n {
            g.waiting
                .insert(InstanceId(format!("i-{i:017x}")), Millis(i));
        }
        (Key::Group(key), Record::Group(g))
    }

    #[test]
    fn records_are_stored_as_json_text_and_items_holding_a_map_still_load() {
        let (key, record) = busy_group(3);
        let item = DynamoStore::item_of(&key, &record).unwrap();
        assert!(
            matches!(item.get(REC), Some(AttributeValue::S(_))),
            "{item:?}"
        );
        let (k, r, v) = DynamoStore::decode_item(&item).unwrap();
        assert_eq!((k, v), (key.clone(), 1));
        assert_eq!(r, record);
        // An item written before records were stored as text.
        let mut old = item.clone();
        old.insert(
            REC.into(),
            serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(&record).unwrap(),
        );
        assert!(matches!(old.get(REC), Some(AttributeValue::M(_))));
        let (_, r, _) = DynamoStore::decode_item(&old).unwrap();
        assert_eq!(r, record);
        // Neither: refused, naming the record.
        old.insert(REC.into(), n(7));
        let err = DynamoStore::decode_item(&old).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { key, .. } if key == "G#app0#dg0"),
            "{err:?}"
        );
    }

    #[test]
    fn oversized_record_is_refused_naming_its_key() {
        // Far more than the core's bound lets a group list: about 30 bytes each.
        let (key, record) = busy_group(20_000);
        let err = DynamoStore::item_of(&key, &record).unwrap_err();
        match err {
            StoreError::TooLarge { key, bytes } => {
                assert_eq!(key, "G#app0#dg0");
                assert!(bytes > MAX_ITEM_BYTES);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !StoreError::TooLarge {
                key: String::new(),
                bytes: 0
            }
            .is_retryable()
        );
    }
}
