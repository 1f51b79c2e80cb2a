//! Certificate items from a JSON body, read as it arrives: the body's size capped while it
//! streams in, the number of items capped as they are parsed, and each `p12` decoded straight
//! into its bytes (an array of byte values, or base64 text) and refused the moment it passes
//! `intake.max_file_bytes`. Nothing goes through a generic JSON value, so a request holds about
//! its own size at most, never a multiple of it (docs/runtime.md has the measurements).

use std::cell::Cell;
use std::fmt;

use axum::body::{Body, Bytes};
use axum::http::header;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use hyper::body::Buf;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::AppState;
use crate::error::ApiError;
use mtls_control::certificates::{ItemInput, MAX_ITEMS, P12};

/// Why the parser stopped, beside serde's error (which carries text only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    FileTooLarge { index: usize },
    TooManyItems,
}

/// What every seed shares: the limits, and where a refusal is recorded.
#[derive(Clone, Copy)]
struct Limits<'a> {
    file: usize,
    /// Most items in the array ([`MAX_ITEMS`]).
    items: usize,
    refusal: &'a Cell<Option<Refusal>>,
}

impl Limits<'_> {
    fn refuse<E: de::Error>(&self, refusal: Refusal) -> E {
        self.refusal.set(Some(refusal));
        E::custom("refused")
    }
}

/// The items of a JSON body (`[{id?, name, p12, password}]`), read from `request` as it arrives.
pub(crate) async fn items(
    request: axum::extract::Request,
    state: &AppState,
) -> Result<Vec<ItemInput>, ApiError> {
    let file = state.control().limits().p12_max_bytes;
    let cap = state.control().limits().json_body_max_bytes();
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let too_large = || ApiError::too_large(format!("the request body is larger than {cap} bytes"));
    if announced.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    // Parsed on a blocking thread from chunks handed over as they arrive: a parse of a large
    // body takes a while and must not hold the worker thread, and the parser is synchronous.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let parse = tokio::task::spawn_blocking(move || {
        let refusal = Cell::new(None);
        let limits = Limits {
            file,
            items: MAX_ITEMS,
            refusal: &refusal,
        };
        parse_from(receiver, limits)
    });
    let pumped = pump(request.into_body(), sender, cap).await;
    let (parsed, refusal) = parse.await.map_err(|error| ApiError::internal(&error))?;
    match (refusal, pumped) {
        (Some(Refusal::FileTooLarge { index }), _) => Err(ApiError::too_large(format!(
            "item {index}: the PKCS#12 file is larger than {file} bytes"
        ))),
        (Some(Refusal::TooManyItems), _) => Err(ApiError::bad_request(
            "too_many_items",
            format!("at most {MAX_ITEMS} certificates per request"),
        )),
        (None, Pumped::TooLarge) => Err(too_large()),
        (None, Pumped::Broken) => Err(ApiError::bad_request(
            "invalid_json",
            "the request body could not be read",
        )),
        (None, Pumped::Complete | Pumped::ParserDone) => parsed.map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the body must be a JSON array of certificate objects",
            )
        }),
    }
}

/// Parses the items from the chunks `receiver` hands over.
fn parse_from(
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    limits: Limits<'_>,
) -> (Result<Vec<ItemInput>, serde_json::Error>, Option<Refusal>) {
    let reader = ChannelReader {
        receiver,
        current: Bytes::new(),
        refusal: limits.refusal,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let parsed = ItemsSeed(limits)
        .deserialize(&mut deserializer)
        .and_then(|items| deserializer.end().map(|()| items));
    (parsed, limits.refusal.get())
}

/// One item from the multipart `certificate` part (already bounded by the part limit).
pub(crate) fn item(json: &[u8], file: usize) -> Result<ItemInput, serde_json::Error> {
    let refusal = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let item = ItemSeed {
        limits: Limits {
            file,
            items: MAX_ITEMS,
            refusal: &refusal,
        },
        index: 0,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(item)
}

/// How the body's reading ended.
#[derive(Debug)]
enum Pumped {
    Complete,
    /// The parser stopped reading (it finished or refused): the rest is not read.
    ParserDone,
    TooLarge,
    Broken,
}

/// Hands the body's chunks to the parser until the body ends, passes `cap`, or the parser stops.
async fn pump(body: Body, sender: tokio::sync::mpsc::Sender<Bytes>, cap: usize) -> Pumped {
    let mut body = body;
    let mut total: usize = 0;
    loop {
        // The parser may stop (refuse, or fail) while the body is silent: then the answer must
        // not wait for the next chunk.
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = sender.closed() => return Pumped::ParserDone,
        };
        let Some(frame) = frame else {
            return Pumped::Complete;
        };
        let Ok(frame) = frame else {
            return Pumped::Broken;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > cap {
            return Pumped::TooLarge;
        }
        if sender.send(data).await.is_err() {
            return Pumped::ParserDone;
        }
    }
}

/// The body's chunks as a `Read`; the end of the channel is the end of the body. Once a limit
/// refused the body, reading fails: serde_json still looks for the end of the array it was in
/// after a visitor's error, and that must not wait for bytes a silent peer never sends.
struct ChannelReader<'a> {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
    refusal: &'a Cell<Option<Refusal>>,
}

impl std::io::Read for ChannelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.refusal.get().is_some() {
            return Err(std::io::Error::other("refused"));
        }
        while !self.current.has_remaining() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let count = out.len().min(self.current.remaining());
        if let Some(out) = out.get_mut(..count) {
            self.current.copy_to_slice(out);
        }
        Ok(count)
    }
}

/// The top-level array, at most [`MAX_ITEMS`] items.
struct ItemsSeed<'a>(Limits<'a>);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Vec<ItemInput>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Vec<ItemInput>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of certificate objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        loop {
            if items.len() == self.0.items {
                // One more item is refused before a byte of it is read.
                return match seq.next_element_seed(Refuse(self.0))? {
                    Some(never) => match never {},
                    None => Ok(items),
                };
            }
            let seed = ItemSeed {
                limits: self.0,
                index: items.len(),
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
    }
}

/// Refuses whatever element it is asked for: the item past [`MAX_ITEMS`].
struct Refuse<'a>(Limits<'a>);

/// No value: [`Refuse`] never produces one.
enum Never {}

impl<'de> DeserializeSeed<'de> for Refuse<'_> {
    type Value = Never;

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<Never, D::Error> {
        Err(self.0.refuse(Refusal::TooManyItems))
    }
}

/// One certificate object.
struct ItemSeed<'a> {
    limits: Limits<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = ItemInput;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<ItemInput, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// The fields of an item; any other key is skipped without keeping its value.
enum Field {
    Id,
    Name,
    P12,
    Password,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "id" => Field::Id,
                    "name" => Field::Name,
                    "p12" => Field::P12,
                    "password" => Field::Password,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = ItemInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a certificate object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemInput, A::Error> {
        let mut item = ItemInput::default();
        let (mut id, mut name, mut p12, mut password) = (false, false, false, false);
        let twice = |seen: &mut bool, field: &'static str| {
            if std::mem::replace(seen, true) {
                Err(de::Error::duplicate_field(field))
            } else {
                Ok(())
            }
        };
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id => {
                    twice(&mut id, "id")?;
                    item.id = map.next_value::<Option<Scalar>>()?.map(Scalar::into_value);
                }
                Field::Name => {
                    twice(&mut name, "name")?;
                    item.name = map.next_value()?;
                }
                Field::P12 => {
                    twice(&mut p12, "p12")?;
                    item.p12 = map.next_value_seed(P12Seed {
                        limits: self.limits,
                        index: self.index,
                    })?;
                }
                Field::Password => {
                    twice(&mut password, "password")?;
                    item.password = map.next_value()?;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(item)
    }
}

/// An `id` as sent: a number or a string is kept; anything else (read and dropped) is an id
/// that is not valid, whatever its size.
enum Scalar {
    Signed(i64),
    Unsigned(u64),
    Text(String),
    Other,
}

impl Scalar {
    fn into_value(self) -> Value {
        match self {
            Scalar::Signed(number) => Value::from(number),
            Scalar::Unsigned(number) => Value::from(number),
            Scalar::Text(text) => Value::String(text),
            Scalar::Other => Value::Bool(false),
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id")
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Scalar, E> {
                Ok(Scalar::Signed(number))
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Scalar, E> {
                Ok(Scalar::Unsigned(number))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(text.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A `p12` value, decoded as it is read; `None` for `null`.
struct P12Seed<'a> {
    limits: Limits<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for P12Seed<'_> {
    type Value = Option<P12>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl P12Seed<'_> {
    fn too_large<E: de::Error>(&self) -> E {
        self.limits
            .refuse(Refusal::FileTooLarge { index: self.index })
    }
}

impl<'de> Visitor<'de> for P12Seed<'_> {
    type Value = Option<P12>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text or an array of byte values")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(P12::Invalid))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(P12::Invalid))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(P12::Invalid))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(P12::Invalid))
    }

    /// Base64: the decoded length is known from the text's length, so a file past the limit is
    /// refused before anything is decoded.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        let digits = text.trim_end_matches('=').len();
        let decoded = digits / 4 * 3 + (digits % 4).saturating_sub(1);
        if decoded > self.limits.file {
            return Err(self.too_large());
        }
        let mut bytes = Zeroizing::new(vec![0; base64::decoded_len_estimate(text.len())]);
        Ok(Some(
            match STANDARD.decode_slice(text, bytes.as_mut_slice()) {
                Ok(length) => {
                    bytes.truncate(length);
                    P12::Bytes(bytes)
                }
                Err(_) => P12::Invalid,
            },
        ))
    }

    /// Byte values, pushed one by one and refused at the first one past the limit (counted
    /// even once an element made the array invalid, so a long bad array stops as early).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let limit = self.limits.file;
        let mut bytes = Zeroizing::new(Vec::new());
        let mut count: usize = 0;
        let mut valid = true;
        while let Some(ByteValue(byte)) = seq.next_element::<ByteValue>()? {
            count += 1;
            if count > limit {
                return Err(self.too_large());
            }
            match byte {
                Some(byte) if valid => push(&mut bytes, byte, limit),
                _ => valid = false,
            }
        }
        Ok(Some(if valid {
            P12::Bytes(bytes)
        } else {
            P12::Invalid
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(P12::Invalid))
    }
}

/// Appends `byte`, growing by doubling up to `limit`: the buffer never holds more than the
/// limit, and each outgrown buffer is wiped (a `Vec`'s own growth would leave copies behind).
fn push(bytes: &mut Zeroizing<Vec<u8>>, byte: u8, limit: usize) {
    if bytes.len() == bytes.capacity() {
        // Not `clamp`: it panics when the limit is below the first step.
        let capacity = bytes
            .capacity()
            .saturating_mul(2)
            .max(4096)
            .min(limit.max(1));
        let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
        grown.extend_from_slice(bytes);
        *bytes = grown;
    }
    bytes.push(byte);
}

/// One element of a byte array: -128..=255 (Java's signed bytes or unsigned), anything else
/// `None` (read and dropped, whatever its size).
struct ByteValue(Option<u8>);

impl<'de> de::Deserialize<'de> for ByteValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteVisitor;
        impl<'de> Visitor<'de> for ByteVisitor {
            type Value = ByteValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte value")
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<ByteValue, E> {
                Ok(ByteValue(match number {
                    -128..=-1 => u8::try_from(number + 256).ok(),
                    _ => u8::try_from(number).ok(),
                }))
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<ByteValue, E> {
                Ok(ByteValue(u8::try_from(number).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ByteValue, E> {
                Ok(ByteValue(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ByteValue, E> {
                Ok(ByteValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ByteValue, E> {
                Ok(ByteValue(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ByteValue, E> {
                Ok(ByteValue(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteValue, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ByteValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ByteValue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ByteValue(None))
            }
        }
        deserializer.deserialize_any(ByteVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        json: &str,
        file: usize,
    ) -> (Result<Vec<ItemInput>, serde_json::Error>, Option<Refusal>) {
        let refusal = Cell::new(None);
        let limits = Limits {
            file,
            items: MAX_ITEMS,
            refusal: &refusal,
        };
        let mut deserializer = serde_json::Deserializer::from_reader(json.as_bytes());
        let parsed = ItemsSeed(limits)
            .deserialize(&mut deserializer)
            .and_then(|items| deserializer.end().map(|()| items));
        (parsed, refusal.get())
    }

    fn bytes(item: &ItemInput) -> Option<&[u8]> {
        match item.p12.as_ref()? {
            P12::Bytes(bytes) => Some(bytes),
            P12::Invalid => None,
        }
    }

    #[test]
    fn byte_arrays_and_base64_decode_within_the_limit() {
        let (items, refusal) = parse(
            r#"[{"name":"a","p12":[-128,-1,0,127,255],"password":"x","other":[[1],{"a":2}]},
                {"id":"7","p12":"AAEC"},{"id":8,"p12":null},{"p12":[1,2,3]}]"#,
            5,
        );
        assert_eq!(refusal, None);
        let items = items.unwrap();
        assert_eq!(bytes(&items[0]), Some(&[128, 255, 0, 127, 255][..]));
        assert_eq!(items[0].name.as_deref(), Some("a"));
        assert_eq!(items[0].password.as_deref(), Some("x"));
        assert_eq!(bytes(&items[1]), Some(&[0, 1, 2][..]));
        assert_eq!(items[1].id, Some(Value::from("7")));
        assert!(items[2].p12.is_none());
        assert_eq!(items[2].id, Some(Value::from(8)));
    }

    #[test]
    fn bad_values_are_an_item_error_not_a_parse_error() {
        let (items, refusal) = parse(
            r#"[{"p12":[1,256]},{"p12":[1,1.5]},{"p12":"!!"},{"p12":true},{"p12":{"a":[1]}},{"id":[1,2]}]"#,
            5,
        );
        assert_eq!(refusal, None);
        let items = items.unwrap();
        for item in &items[..5] {
            assert!(matches!(item.p12, Some(P12::Invalid)));
        }
        assert_eq!(items[5].id, Some(Value::Bool(false)));
    }

    #[test]
    fn a_file_past_the_limit_stops_the_parse() {
        let (items, refusal) = parse(r#"[{"p12":[1,2,3]},{"p12":[1,2,3,4,5,6]}]"#, 5);
        assert!(items.is_err());
        assert_eq!(refusal, Some(Refusal::FileTooLarge { index: 1 }));
        // A bad array counts too.
        let (_, refusal) = parse(r#"[{"p12":["x","x","x","x","x","x"]}]"#, 5);
        assert_eq!(refusal, Some(Refusal::FileTooLarge { index: 0 }));
        // Base64: 8 digits are 6 bytes, refused before decoding; 5 bytes pass.
        let (_, refusal) = parse(r#"[{"p12":"AAAAAAAA"}]"#, 5);
        assert_eq!(refusal, Some(Refusal::FileTooLarge { index: 0 }));
        let (items, refusal) = parse(r#"[{"p12":"AAAAAAA="}]"#, 5);
        assert_eq!(refusal, None);
        assert_eq!(bytes(&items.unwrap()[0]).map(<[u8]>::len), Some(5));
    }

    #[test]
    fn items_past_the_cap_are_refused_before_they_are_read() {
        let many = vec!["{}"; MAX_ITEMS].join(",");
        let (items, refusal) = parse(&format!("[{many}]"), 5);
        assert_eq!(items.unwrap().len(), MAX_ITEMS);
        assert_eq!(refusal, None);
        let (items, refusal) = parse(&format!("[{many},{{\"p12\":[1"), 5);
        assert!(items.is_err());
        assert_eq!(refusal, Some(Refusal::TooManyItems));
    }

    /// A refusal ends the parse with the bytes read so far: nothing more is asked of a peer
    /// that sends nothing after the byte past the limit (serde_json would look for the `]`).
    #[test]
    fn a_refusal_does_not_wait_for_more_of_the_body() {
        for json in [
            r#"[{"p12":[1,1,1,1,1,1,"#,
            r#"[{"p12":"AAAAAAAA","#,
            r#"[{},{},{},{},{},{},"#,
        ] {
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            sender.try_send(Bytes::from(json)).unwrap();
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let refusal = Cell::new(None);
                let limits = Limits {
                    file: 5,
                    items: 5,
                    refusal: &refusal,
                };
                let items = parse_from(receiver, limits);
                let _ = done.send(items.1);
            });
            let refusal = finished
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("the parse waited for bytes after its refusal");
            assert!(refusal.is_some(), "{json}");
            drop(sender);
        }
    }

    #[test]
    fn malformed_bodies_are_errors_without_refusal() {
        for json in [
            r#"{"p12":[1]}"#,
            r#"[{"p12":[1]}"#,
            r#"[{"name":1}]"#,
            r#"[{"p12":[1],"p12":[2]}]"#,
            "[] x",
        ] {
            let (items, refusal) = parse(json, 5);
            assert!(items.is_err(), "{json}");
            assert_eq!(refusal, None, "{json}");
        }
    }
}
