//! Tensors written as JSON numbers: flat or nested (row-major) arrays, flattened while they are
//! parsed, never built as a `serde_json::Value` tree (every number a 32-byte node to allocate and
//! walk; a 32×32×3 image is 3,072 of them).

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use std::fmt;

/// How deep arrays may nest.
const MAX_DEPTH: usize = 8;

/// A number, or arrays of numbers at most 8 deep, flattened: the values in row-major order and
/// the shape the nesting gives (`[]` for a bare number). Ragged arrays do not parse; anything
/// else where a number belongs (a string, `null`, an object) is kept aside in `not_a_number`, so
/// the caller can first say what is wrong with the rest (a `BYTES` tensor's datatype, say).
#[derive(Debug, Default, PartialEq)]
pub struct Flat {
    /// The numbers, row-major.
    pub values: Vec<f64>,
    /// The shape of the nesting.
    pub shape: Vec<usize>,
    /// The first value that was not a number or an array, as JSON would write it.
    pub not_a_number: Option<String>,
}

impl Flat {
    /// The numbers, or what was found instead of one.
    pub fn numbers(&self) -> Result<&[f64], String> {
        match &self.not_a_number {
            Some(found) => Err(format!("data must be numbers or arrays of numbers, found {found}")),
            None => Ok(&self.values),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Flat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (mut values, mut not_a_number) = (Vec::new(), None);
        let shape = Level { out: &mut values, not_a_number: &mut not_a_number, depth: 0 }.deserialize(deserializer)?;
        Ok(Flat { values, shape, not_a_number })
    }
}

/// One level of nesting: pushes its numbers into `out` and returns the shape below it.
struct Level<'a> {
    out: &'a mut Vec<f64>,
    not_a_number: &'a mut Option<String>,
    depth: usize,
}

impl Level<'_> {
    fn not_a_number(self, found: impl FnOnce() -> String) -> Vec<usize> {
        self.not_a_number.get_or_insert_with(found);
        Vec::new()
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers or arrays of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.out.push(v);
        Ok(Vec::new())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.not_a_number(|| format!("{v:?}")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.not_a_number(|| v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.not_a_number(|| "null".into()))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
        Ok(self.not_a_number(|| "an object".into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!("arrays are nested more than {MAX_DEPTH} deep")));
        }
        let (mut items, mut inner): (usize, Option<Vec<usize>>) = (0, None);
        let depth = self.depth + 1;
        while let Some(shape) = seq.next_element_seed(Level { out: &mut *self.out, not_a_number: &mut *self.not_a_number, depth })? {
            if inner.as_ref().is_some_and(|s| *s != shape) {
                return Err(de::Error::custom("nested arrays are ragged"));
            }
            inner = Some(shape);
            items += 1;
        }
        let mut shape = vec![items];
        shape.extend(inner.unwrap_or_default());
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::Flat;

    fn flat(text: &str) -> Result<Flat, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn nested_and_flat() {
        let nested = flat("[[1, 2, 3], [4, -5, 6.5]]").unwrap();
        assert_eq!(nested.numbers().unwrap(), [1.0, 2.0, 3.0, 4.0, -5.0, 6.5]);
        assert_eq!(nested.shape, vec![2, 3]);
        assert_eq!(flat("7").unwrap().shape, Vec::<usize>::new());
        assert!(flat("[[1, 2], [3]]").unwrap_err().contains("ragged"));
        assert_eq!(flat(r#"[1, "a", null]"#).unwrap().numbers().unwrap_err(), r#"data must be numbers or arrays of numbers, found "a""#);
        assert!(flat(r#"[{"x": [1]}]"#).unwrap().numbers().unwrap_err().ends_with("found an object"));
        assert!(flat(&format!("{}1{}", "[".repeat(9), "]".repeat(9))).unwrap_err().contains("nested more than 8 deep"));
        assert!(flat(&format!("{}1{}", "[".repeat(8), "]".repeat(8))).is_ok());
    }
}
