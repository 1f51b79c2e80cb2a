//! The OTLP trace messages the gateway sends, encoded by hand (protobuf wire format): an
//! `ExportTraceServiceRequest` with one `ResourceSpans` (the `service.name` resource
//! attribute), one `ScopeSpans` and the batch's spans. Field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto` and `collector/trace/v1/trace_service.proto`; a handful of
//! messages do not warrant a protobuf code generator and its build dependencies.

use crate::{Attribute, Span, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap_or(0));
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    tag(out, field, LENGTH);
    varint(out, u64::try_from(value.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(value);
}

/// A length-delimited sub-message written by `write`.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes(out, field, &inner);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`, `AnyValue { string_value = 1;
/// bool_value = 2; int_value = 3; }`.
fn key_value(out: &mut Vec<u8>, field: u32, attribute: &Attribute) {
    message(out, field, |kv| {
        bytes(kv, 1, attribute.key.as_bytes());
        message(kv, 2, |any| match &attribute.value {
            Value::Text(text) => bytes(any, 1, text.as_bytes()),
            Value::Bool(flag) => {
                tag(any, 2, VARINT);
                varint(any, u64::from(*flag));
            }
            Value::Int(number) => {
                tag(any, 3, VARINT);
                // int64: two's complement, as protobuf encodes negative int64 values.
                varint(any, u64::from_ne_bytes(number.to_ne_bytes()));
            }
        });
    });
}

fn unix_nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// `Span` (trace.proto).
fn span(out: &mut Vec<u8>, span: &Span) {
    message(out, 2, |s| {
        bytes(s, 1, &span.trace_id);
        bytes(s, 2, &span.span_id);
        if let Some(parent) = &span.parent_span_id {
            bytes(s, 4, parent);
        }
        bytes(s, 5, span.name.as_bytes());
        tag(s, 6, VARINT);
        varint(s, span.kind as u64);
        fixed64(s, 7, unix_nanos(span.start));
        fixed64(s, 8, unix_nanos(span.end));
        for attribute in &span.attributes {
            key_value(s, 9, attribute);
        }
        if span.error {
            // Status { code = 3 } with STATUS_CODE_ERROR (2).
            message(s, 15, |status| {
                tag(status, 3, VARINT);
                varint(status, 2);
            });
        }
        // flags (16): the W3C trace flags in the low byte, sampled.
        tag(s, 16, FIXED32);
        s.extend_from_slice(&1u32.to_le_bytes());
    });
}

/// The `ExportTraceServiceRequest` body for `spans`.
pub(crate) fn export_request(service_name: &str, spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |resource_spans| {
        message(resource_spans, 1, |resource| {
            key_value(
                resource,
                1,
                &Attribute {
                    key: "service.name",
                    value: Value::Text(service_name.to_owned()),
                },
            );
        });
        message(resource_spans, 2, |scope_spans| {
            message(scope_spans, 1, |scope| {
                bytes(scope, 1, b"mtls-gateway");
                bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for item in spans {
                span(scope_spans, item);
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        for (value, expected) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, expected, "{value}");
        }
    }
}
