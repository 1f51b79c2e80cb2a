//! JSON bodies read whole but parsed with their limits: an array capped while it is parsed
//! (the element past the cap is refused unread), and id fields that keep no large value.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why [`array`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum ArrayError {
    /// More than the allowed number of elements: refused at the first one past it, unread.
    TooMany,
    /// Not a JSON array of `T`.
    Invalid,
}

/// A JSON array of at most `max` elements of `T`, the element past `max` refused before it is
/// parsed: a body of many tiny elements (`[{},{},...]`) would otherwise become a vector of
/// full-size values, about a hundred times its own size, before its length is checked.
pub fn array<T: de::DeserializeOwned>(json: &[u8], max: usize) -> Result<Vec<T>, ArrayError> {
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

/// An id-like JSON value (`certificationId`, `serviceId`, `siteId`): a number, a string or a
/// boolean is kept, `null` is absent, and an array or object is read and dropped as `false`
/// (never a valid id), so that no id field can hold a large value.
pub fn scalar<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    struct ScalarVisitor;
    impl<'de> Visitor<'de> for ScalarVisitor {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an id")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(Some(Value::Bool(value)))
        }
        fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(Value::String(text.to_owned())))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Some(Value::Bool(false)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Some(Value::Bool(false)))
        }
    }
    deserializer.deserialize_any(ScalarVisitor)
}

/// No value: [`RefuseElement`] never produces one.
enum Never {}

#[cfg(test)]
mod tests {
    use super::*;

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
