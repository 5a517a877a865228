//! The input check at the door: every submit's input is checked against its kind's JSON Schema
//! before anything is created (REST and gRPC both, since the check is in
//! [`crate::service::Service::submit`]). A violation is 400 INVALID_ARGUMENT, reason
//! `INVALID_INPUT`, with a `google.rpc.BadRequest` naming each field. The kinds and their cache
//! are in the parent module; this one compiles a kind's schema and turns its errors into field
//! violations.
//!
//! Input is normalized before it is checked: whole numbers written as floats (`5.0`) become
//! integers, as gRPC's Struct numbers always do, so both transports check and store the same JSON.
//! Schemas are local: `$ref`s to anything but the schema itself do not resolve (the `jsonschema`
//! crate is built without its HTTP and file retrievers), and such a kind refuses every submit.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use lro_common::kinds::{DURATION_FORMAT, DURATION_PATTERN};
use lro_common::status::Code;
use serde_json::{Value, json};

use super::Kind;
use crate::error::{ApiError, Detail, FieldViolation};

/// The field path every violation is rooted at: the request's `input`.
const ROOT: &str = "input";

impl Kind {
    /// The input as it is stored (whole numbers as integers), if it satisfies the kind's schema.
    pub fn admit(&self, input: Value) -> Result<Value, ApiError> {
        let validator = self.validator.as_ref().map_err(|e| {
            ApiError::new(
                Code::FailedPrecondition,
                "INVALID_KIND_SCHEMA",
                format!(
                    "kind {:?} declares an input schema that cannot be used: {e}",
                    self.info.name
                ),
            )
            .with("kind", &self.info.name)
        })?;
        let input = whole_numbers_as_integers(input);
        let violations = violations(validator.iter_errors(&input));
        if violations.is_empty() {
            return Ok(input);
        }
        let listed: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        Err(ApiError::invalid(
            "INVALID_INPUT",
            format!(
                "input does not fit the schema of kind {:?}: {}",
                self.info.name,
                listed.join("; ")
            ),
        )
        .with("kind", &self.info.name)
        .with_detail(Detail::BadRequest(violations)))
    }
}

/// Compiles a schema: local references only, formats asserted (with lro's duration format).
pub(super) fn compile(schema: &Value) -> Result<Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("a schema is an object or a boolean".into());
    }
    let mut schema = schema.clone();
    name_unknown_fields(&mut schema);
    jsonschema::options()
        .should_validate_formats(true)
        .with_format(DURATION_FORMAT, |s: &str| {
            lro_common::time::parse_duration(s).is_ok()
        })
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// Gives every `additionalProperties: false` without `properties` an empty `properties`: the
/// same schema, but `jsonschema` then reports each unknown field by name instead of one
/// nameless "false schema" error. Values (`const`, `enum`, `default`, `examples`) are left alone.
fn name_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if o.get("additionalProperties") == Some(&Value::Bool(false))
                && !o.contains_key("properties")
                && !o.contains_key("patternProperties")
            {
                o.insert("properties".into(), json!({}));
            }
            for (k, v) in o.iter_mut() {
                if !matches!(k.as_str(), "const" | "enum" | "default" | "examples") {
                    name_unknown_fields(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(name_unknown_fields),
        _ => {}
    }
}

/// Each violation, once: a format failure on a field that already failed (a duration that is not
/// one fails its pattern and its format) is not listed again.
fn violations<'a>(errors: impl Iterator<Item = ValidationError<'a>>) -> Vec<FieldViolation> {
    let mut out: Vec<FieldViolation> = Vec::new();
    let push = |out: &mut Vec<FieldViolation>, field: String, description: String| {
        let v = FieldViolation { field, description };
        if !out.contains(&v) {
            out.push(v);
        }
    };
    for e in errors {
        let path = field_path(&e);
        match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    push(&mut out, child(&path, name), "unknown field".into());
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_owned);
                push(&mut out, child(&path, &name), "is required".into());
            }
            ValidationErrorKind::Format { .. } if out.iter().any(|v| v.field == path) => {}
            kind => {
                let description = description(kind, &e);
                push(&mut out, path, description);
            }
        }
    }
    out
}

/// The error's instance path in Google's dotted style: `input.items[2].x`.
fn field_path(e: &ValidationError<'_>) -> String {
    let mut path = ROOT.to_owned();
    for segment in e.instance_path().iter() {
        match segment {
            LocationSegment::Property(name) => path = child(&path, &name),
            LocationSegment::Index(i) => path += &format!("[{i}]"),
        }
    }
    path
}

/// `parent.name`, or `parent["name"]` for a name that is not an identifier.
fn child(parent: &str, name: &str) -> String {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        format!("{parent}.{name}")
    } else {
        format!("{parent}[{}]", Value::from(name))
    }
}

/// What is wrong, lowercase, as a requirement: "must be at least 1".
fn description(kind: &ValidationErrorKind, e: &ValidationError<'_>) -> String {
    match kind {
        ValidationErrorKind::Type { kind } => {
            let types: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![t.as_str()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.as_str()).collect(),
            };
            let named: Vec<String> = types
                .iter()
                .map(|t| match *t {
                    "null" => "null".to_owned(),
                    t if t.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {t}"),
                    t => format!("a {t}"),
                })
                .collect();
            format!("must be {}", named.join(" or "))
        }
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters long")
        }
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
            r#"must be a duration such as "10s", "1.5s", "250ms", "2m" or "1h""#.into()
        }
        ValidationErrorKind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        ValidationErrorKind::Format { format } if format == DURATION_FORMAT => {
            "must be a duration of at most 315576000000s".into()
        }
        ValidationErrorKind::Format { format } => format!("must be a valid {format}"),
        ValidationErrorKind::Enum { options } => format!("must be one of {options}"),
        ValidationErrorKind::Constant { expected_value } => format!("must be {expected_value}"),
        _ => {
            let text = e.to_string();
            let mut chars = text.chars();
            chars.next().map_or(text.clone(), |c| {
                c.to_lowercase().chain(chars).collect::<String>()
            })
        }
    }
}

/// Whole numbers written as floats become integers (within ±2^53, where a double is exact).
fn whole_numbers_as_integers(v: Value) -> Value {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 2f64.powi(53) => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(whole_numbers_as_integers).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, whole_numbers_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lro_common::kinds::{self, KindInfo};

    fn builtin(name: &str) -> Kind {
        let info = kinds::builtin()
            .into_iter()
            .find(|k| k.name == name)
            .expect("built-in");
        Kind::new(info, true)
    }

    /// The fields named by the BadRequest of refusing `input`, or `None` if it is admitted.
    fn refused(kind: &Kind, input: Value) -> Option<Vec<(String, String)>> {
        let e = kind.admit(input).err()?;
        assert_eq!((e.code, e.reason), (Code::InvalidArgument, "INVALID_INPUT"));
        let [Detail::BadRequest(violations)] = e.details.as_slice() else {
            panic!("one BadRequest: {e:?}");
        };
        Some(
            violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect(),
        )
    }

    fn fields(kind: &Kind, input: Value) -> Vec<String> {
        refused(kind, input.clone())
            .unwrap_or_else(|| panic!("admitted: {input}"))
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    /// The duration schema admits exactly what `parse_duration` parses.
    #[test]
    fn the_duration_schema_admits_what_parse_duration_parses() {
        let sleep = builtin("sleep");
        for d in [
            "5s",
            "1.5s",
            "250ms",
            "0.5ms",
            "2m",
            "1.5h",
            "0s",
            "007s",
            "0.000000001s",
            "315576000000s",
            "",
            "s",
            "5",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "abc",
            "5x",
            "ms",
            "1.5.5s",
            "1 s",
            "315576000001s",
            "99999999999999999999999999h",
            "forever",
            "5S",
            " 5s",
            "5s ",
            "1e3s",
            "+5s",
        ] {
            let parses = lro_common::time::parse_duration(d).is_ok();
            let admitted = sleep.admit(json!({ "duration": d })).is_ok();
            assert_eq!(admitted, parses, "{d:?}");
        }
        let described = refused(&sleep, json!({ "duration": "forever" })).expect("refused");
        assert_eq!(
            described.len(),
            1,
            "one violation for one field: {described:?}"
        );
        assert_eq!(described[0].0, "input.duration");
        assert!(
            described[0].1.starts_with("must be a duration"),
            "{described:?}"
        );
        let too_long = refused(&sleep, json!({ "duration": "315576000001s" })).expect("refused");
        assert_eq!(too_long[0].1, "must be a duration of at most 315576000000s");
    }

    #[test]
    fn builtin_inputs_are_checked_as_the_contract_says() {
        let sleep = builtin("sleep");
        for ok in [
            json!({}),
            json!({ "duration": "10ms", "steps": 1 }),
            json!({ "steps": 10000 }),
        ] {
            assert!(sleep.admit(ok.clone()).is_ok(), "{ok}");
        }
        assert_eq!(fields(&sleep, json!({ "steps": 0 })), ["input.steps"]);
        assert_eq!(fields(&sleep, json!({ "steps": 10001 })), ["input.steps"]);
        assert_eq!(fields(&sleep, json!({ "steps": "3" })), ["input.steps"]);
        assert_eq!(fields(&sleep, json!({ "steps": 1.5 })), ["input.steps"]);
        assert_eq!(fields(&sleep, json!({ "duration": 5 })), ["input.duration"]);
        assert_eq!(
            fields(&sleep, json!({ "extra": 1, "more": 2 })),
            ["input.extra", "input.more"]
        );
        assert_eq!(
            fields(
                &sleep,
                json!({ "duration": "forever", "steps": 0, "x": true })
            ),
            ["input.duration", "input.steps", "input.x"]
        );

        let fail = builtin("fail");
        assert!(
            fail.admit(json!({ "code": 16, "message": "m", "retryable": true }))
                .is_ok()
        );
        assert!(fail.admit(json!({ "code": 1 })).is_ok());
        for code in [0, 17, -1] {
            assert_eq!(
                fields(&fail, json!({ "code": code })),
                ["input.code"],
                "{code}"
            );
        }
        assert_eq!(fields(&fail, json!({ "message": 5 })), ["input.message"]);
        assert_eq!(
            fields(&fail, json!({ "retryable": "yes" })),
            ["input.retryable"]
        );

        let spin = builtin("spin");
        assert!(spin.admit(json!({ "iterations": 0 })).is_ok());
        assert!(spin.admit(json!({ "iterations": u64::MAX })).is_ok());
        assert_eq!(
            fields(&spin, json!({ "iterations": -1 })),
            ["input.iterations"]
        );
        assert_eq!(
            fields(&spin, json!({ "iterations": 1e20 })),
            ["input.iterations"]
        );
        assert_eq!(fields(&spin, json!({})), ["input.iterations"]);
        let missing = refused(&spin, json!({})).expect("refused");
        assert_eq!(missing[0].1, "is required");

        let noop = builtin("noop");
        assert!(noop.admit(json!({})).is_ok());
        let unknown = refused(&noop, json!({ "x": 1 })).expect("refused");
        assert_eq!(
            unknown,
            [("input.x".to_owned(), "unknown field".to_owned())]
        );
    }

    #[test]
    fn whole_floats_are_admitted_and_stored_as_integers() {
        let admitted = builtin("sleep")
            .admit(json!({ "steps": 5.0 }))
            .expect("admitted");
        assert_eq!(admitted, json!({ "steps": 5 }));
        assert!(admitted["steps"].is_u64());
    }

    #[test]
    fn paths_are_dotted_with_indexes_and_descriptions_lowercase() {
        let schema = json!({
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": { "x": { "type": "integer" } },
                        "additionalProperties": false
                    }
                },
                "odd key": { "type": "string" }
            }
        });
        let kind = Kind::new(
            KindInfo {
                name: "k".into(),
                cancellable: true,
                input_schema: schema,
            },
            false,
        );
        let got = refused(
            &kind,
            json!({ "items": [{ "x": 1 }, { "x": 2 }, { "x": "3", "y": 0 }], "odd key": 1 }),
        )
        .expect("refused");
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"input.items[2].x"), "{got:?}");
        assert!(fields.contains(&"input.items[2].y"), "{got:?}");
        assert!(fields.contains(&r#"input["odd key"]"#), "{got:?}");
        for (_, d) in &got {
            assert!(d.starts_with(|c: char| c.is_lowercase()), "{d}");
        }
    }

    #[test]
    fn a_schema_that_does_not_compile_refuses_every_submit_without_a_5xx() {
        for schema in [
            json!({ "type": 5 }),
            json!("nope"),
            json!({ "$ref": "https://example.com/s.json" }),
        ] {
            let kind = Kind::new(
                KindInfo {
                    name: "broken".into(),
                    cancellable: true,
                    input_schema: schema.clone(),
                },
                false,
            );
            let e = kind.admit(json!({})).expect_err("refused");
            assert_eq!(e.code, Code::FailedPrecondition, "{schema}");
            assert!(kind.info.input_schema.is_object(), "{schema}");
        }
    }
}
