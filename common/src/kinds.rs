//! What the api knows about job kinds: their names, whether they can be cancelled, and the JSON
//! Schema of their input.
//!
//! The built-in kinds are part of the contract, so they are known even before any worker starts;
//! their input types live here, so the api's schemas and the worker's parsing are one definition.
//! Workers built on the library register their own kinds in Redis at start-up (see
//! [`crate::store::Store::register_kinds`]); the api accepts the union. This module only
//! describes inputs; validating them is the api's business (`api/src/schema/check.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A job kind as the api sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindInfo {
    pub name: String,
    pub cancellable: bool,
    /// The JSON Schema (draft 2020-12) its input must satisfy. Kinds registered by workers that
    /// predate schemas have none recorded and read as "any object".
    #[serde(default = "any_object")]
    pub input_schema: Value,
}

/// The schema of a kind that declares nothing about its input: any JSON object.
pub fn any_object() -> Value {
    json!({ "type": "object" })
}

/// The duration strings [`crate::time::parse_duration`] takes, as a JSON Schema `pattern`: the
/// `google.protobuf.Duration` JSON form (`"1.5s"`) or the same decimal with `ms`, `m` or `h`.
pub const DURATION_PATTERN: &str = r"^[0-9]+(\.[0-9]{1,9})?(ms|s|m|h)$";

/// The JSON Schema `format` of such a duration. The api checks it with
/// [`crate::time::parse_duration`] (which also bounds it: at most 315,576,000,000 s, as
/// `google.protobuf.Duration`); other validators treat an unknown format as an annotation, so the
/// `pattern` is what they check.
pub const DURATION_FORMAT: &str = "lro-duration";

/// Input of `sleep` and `uninterruptible`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    /// How long to sleep in all, e.g. "5s", "1.5s", "250ms", "2m" (default 1s).
    #[schemars(regex(pattern = DURATION_PATTERN), extend("format" = DURATION_FORMAT))]
    pub duration: Option<String>,
    /// In how many steps, reporting progress after each (default 10).
    #[schemars(range(min = 1, max = SleepInput::MAX_STEPS))]
    pub steps: Option<u32>,
}

impl SleepInput {
    pub const MAX_STEPS: u32 = 10_000;
}

/// Input of `noop`: nothing.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopInput {}

/// Input of `fail`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailInput {
    /// The `google.rpc.Code` to fail with, 1-16 (default 13, INTERNAL).
    #[schemars(range(min = 1, max = 16))]
    pub code: Option<i32>,
    /// The status message (default "failed as asked").
    pub message: Option<String>,
    /// Fail retryably: the operation runs again after a backoff, up to its most attempts.
    #[serde(default)]
    pub retryable: bool,
}

/// Input of `spin`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpinInput {
    /// How many rounds of CPU-bound work to do.
    #[schemars(range(max = u64::MAX))]
    pub iterations: u64,
}

/// The kind of a batch cancel's operation (`POST …/operations:batchCancel`). Only the api creates
/// operations of this kind: a submit of it is refused, so its `principal` cannot be forged.
pub const BATCH_CANCEL: &str = "batch-cancel";

/// Input of `batch-cancel`, written by the api.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCancelInput {
    /// Which operations of the batch's parent to cancel, in the list filter syntax (not empty).
    #[schemars(length(min = 1))]
    pub filter: String,
    /// Who asked for the batch (a token's `sub`, an API key's name); recorded as each cancel's
    /// `cancelRequestedBy`. Absent when authentication is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// The output of `batch-cancel` (a `google.protobuf.Struct`): how many operations matched the
/// filter, and what became of them. `cancelled + alreadyDone + notCancellable = matched`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCancelCounts {
    pub matched: u64,
    pub cancelled: u64,
    pub already_done: u64,
    pub not_cancellable: u64,
}

/// The JSON Schema of `T`'s input, as the api checks it: draft 2020-12, for deserializing (so
/// fields with a default are optional).
pub fn input_schema<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The kinds every `lro-worker` runs (see the contract's "Built-in job kinds").
pub fn builtin() -> Vec<KindInfo> {
    let kind = |name: &str, cancellable, input_schema| KindInfo {
        name: name.to_owned(),
        cancellable,
        input_schema,
    };
    vec![
        kind("sleep", true, input_schema::<SleepInput>()),
        kind("noop", true, input_schema::<NoopInput>()),
        kind("fail", true, input_schema::<FailInput>()),
        kind("spin", true, input_schema::<SpinInput>()),
        kind("uninterruptible", false, input_schema::<SleepInput>()),
        batch_cancel(),
    ]
}

/// The `batch-cancel` kind: cancellable (cancelling the batch stops it).
pub fn batch_cancel() -> KindInfo {
    KindInfo {
        name: BATCH_CANCEL.to_owned(),
        cancellable: true,
        input_schema: input_schema::<BatchCancelInput>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> Value {
        builtin()
            .into_iter()
            .find(|k| k.name == name)
            .map(|k| k.input_schema)
            .expect("built-in")
    }

    /// The contract's constraints, as generated from the input types.
    #[test]
    fn builtin_schemas_say_what_the_contract_says() {
        for name in ["sleep", "uninterruptible", "noop", "fail", "spin"] {
            let s = schema(name);
            assert_eq!(s["type"], "object", "{name}: {s}");
            assert_eq!(s["additionalProperties"], false, "{name}: {s}");
        }
        let sleep = schema("sleep");
        let p = &sleep["properties"];
        assert_eq!(p["duration"]["pattern"], DURATION_PATTERN, "{sleep}");
        assert_eq!(p["duration"]["format"], DURATION_FORMAT, "{sleep}");
        assert_eq!(p["steps"]["minimum"], 1, "{sleep}");
        assert_eq!(p["steps"]["maximum"], 10_000, "{sleep}");
        assert!(sleep.get("required").is_none(), "{sleep}");
        assert_eq!(schema("uninterruptible")["properties"], sleep["properties"]);

        let fail = schema("fail");
        let p = &fail["properties"];
        assert_eq!(
            (&p["code"]["minimum"], &p["code"]["maximum"]),
            (&json!(1), &json!(16))
        );
        assert!(
            p["message"]["type"].to_string().contains("string"),
            "{fail}"
        );
        assert_eq!(p["retryable"]["type"], "boolean", "{fail}");

        let spin = schema("spin");
        assert_eq!(
            spin["properties"]["iterations"]["type"], "integer",
            "{spin}"
        );
        assert_eq!(spin["properties"]["iterations"]["minimum"], 0, "{spin}");
        assert_eq!(
            spin["properties"]["iterations"]["maximum"],
            u64::MAX,
            "{spin}"
        );
        assert_eq!(spin["required"], json!(["iterations"]), "{spin}");

        assert!(schema("noop").get("required").is_none());
    }

    /// Records written by workers before schemas existed still decode, as "any object".
    #[test]
    fn a_kind_without_a_schema_reads_as_any_object() {
        let old: KindInfo =
            serde_json::from_str(r#"{"name":"old","cancellable":true}"#).expect("decodes");
        assert_eq!(old.input_schema, any_object());
    }
}
