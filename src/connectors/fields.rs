//! The keys a serde struct reads, taken from its derived `Deserialize`, so
//! that no list of keys is kept by hand beside the struct (a section's
//! shared keys and each kind's own).

use serde::Deserialize;

/// The field names of a struct as serde reads them, from its derived
/// `Deserialize` (which hands them to `deserialize_struct`), so that no
/// list of keys is kept by hand beside the struct.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only notes the fields a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only field names are read"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::fields_of;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        first: bool,
        #[serde(default, rename = "second_key")]
        second: u8,
    }

    #[test]
    fn field_names_come_from_the_struct() {
        assert_eq!(fields_of::<Two>(), ["first", "second_key"]);
    }
}
