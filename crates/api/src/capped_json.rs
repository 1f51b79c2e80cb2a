//! JSON bodies read whole but parsed with their limits: an array capped while it is parsed
//! (the element past the cap is refused unread). Id fields that keep no large value are
//! `mtls_control::mappings::scalar`.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

/// Why [`array`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ArrayError {
    /// More than the allowed number of elements: refused at the first one past it, unread.
    TooMany,
    /// Not a JSON array of `T`.
    Invalid,
}

/// A JSON array of at most `max` elements of `T`, the element past `max` refused before it is
/// parsed: a body of many tiny elements (`[{},{},...]`) would otherwise become a vector of
/// full-size values, about a hundred times its own size, before its length is checked.
pub(crate) fn array<T: de::DeserializeOwned>(
    json: &[u8],
    max: usize,
) -> Result<Vec<T>, ArrayError> {
    let too_many = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let seed = CappedArray {
        max,
        too_many: &too_many,
        element: std::marker::PhantomData,
    };
    let parsed = seed
        .deserialize(&mut deserializer)
        .and_then(|items| deserializer.end().map(|()| items));
    match parsed {
        Ok(items) => Ok(items),
        Err(_) if too_many.get() => Err(ArrayError::TooMany),
        Err(_) => Err(ArrayError::Invalid),
    }
}

struct CappedArray<'a, T> {
    max: usize,
    too_many: &'a Cell<bool>,
    element: std::marker::PhantomData<fn() -> T>,
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for CappedArray<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for CappedArray<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        loop {
            if items.len() == self.max {
                return match seq.next_element_seed(RefuseElement(self.too_many))? {
                    Some(never) => match never {},
                    None => Ok(items),
                };
            }
            match seq.next_element()? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
    }
}

/// Refuses the element past an array's cap without reading it.
struct RefuseElement<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for RefuseElement<'_> {
    type Value = Never;

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<Never, D::Error> {
        self.0.set(true);
        Err(de::Error::custom("too many elements"))
    }
}

/// No value: [`RefuseElement`] never produces one.
enum Never {}

#[cfg(test)]
mod tests {
    use super::*;
    use mtls_control::mappings::scalar;
    use serde_json::Value;

    #[test]
    fn arrays_are_capped_while_parsed() {
        assert_eq!(
            array::<Value>(b"[1,2,3]", 3),
            Ok(vec![1.into(), 2.into(), 3.into()])
        );
        assert_eq!(array::<Value>(b"[1,2,3,4", 3), Err(ArrayError::TooMany));
        assert_eq!(array::<Value>(b"[1,2", 3), Err(ArrayError::Invalid));
        assert_eq!(array::<Value>(b"{}", 3), Err(ArrayError::Invalid));
        assert_eq!(array::<Value>(b"[] []", 3), Err(ArrayError::Invalid));
    }

    #[test]
    fn id_fields_hold_no_large_value() {
        #[derive(serde::Deserialize)]
        struct Ids {
            #[serde(default, deserialize_with = "scalar")]
            id: Option<Value>,
        }
        let id = |json: &str| serde_json::from_str::<Ids>(json).unwrap().id;
        assert_eq!(id(r#"{"id":7}"#), Some(Value::from(7)));
        assert_eq!(id(r#"{"id":"7"}"#), Some(Value::from("7")));
        assert_eq!(id(r#"{"id":null}"#), None);
        assert_eq!(id(r#"{}"#), None);
        assert_eq!(id(r#"{"id":[1,[2],{"a":3}]}"#), Some(Value::Bool(false)));
        assert_eq!(id(r#"{"id":{"a":[1]}}"#), Some(Value::Bool(false)));
    }
}
