//! Small helpers to build and take apart `apache_avro::types::Value` records by hand. Hand
//! conversion (rather than serde) keeps unions of records explicit and the error messages precise.

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::schema_set::DecodeError;

pub(crate) fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

pub(crate) fn opt_string(s: &Option<String>) -> Value {
    match s {
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

pub(crate) fn opt_bytes(b: &Option<Vec<u8>>) -> Value {
    match b {
        Some(b) => Value::Union(1, Box::new(Value::Bytes(b.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

pub(crate) fn opt_micros(t: Option<i64>) -> Value {
    match t {
        Some(t) => Value::Union(1, Box::new(Value::TimestampMicros(t))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// Names of the record variants of the union in `field` of the top-level record `schema`, in
/// schema order. Dispatching on names rather than positions keeps decoding right if a later
/// schema version inserts a variant.
pub(crate) fn union_names(schema: &Schema, field: &str) -> Vec<String> {
    let Schema::Record(rec) = schema else {
        return Vec::new();
    };
    let Some(f) = rec.fields.iter().find(|f| f.name == field) else {
        return Vec::new();
    };
    let Schema::Union(u) = &f.schema else {
        return Vec::new();
    };
    u.variants()
        .iter()
        .map(|v| match v {
            Schema::Record(r) => r.name.name.clone(),
            Schema::Ref { name } => name.name.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A decoded record whose fields are taken out one by one, with errors that name the field.
pub(crate) struct Fields {
    what: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub(crate) fn new(what: &'static str, v: Value) -> Result<Self, DecodeError> {
        match v {
            Value::Record(fields) => Ok(Self { what, fields }),
            other => Err(DecodeError::Shape(format!(
                "{what}: expected a record, got {other:?}"
            ))),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, DecodeError> {
        let pos = self
            .fields
            .iter()
            .position(|(k, _)| k == name)
            .ok_or_else(|| DecodeError::Shape(format!("{}: missing field {name}", self.what)))?;
        Ok(self.fields.swap_remove(pos).1)
    }

    fn bad(&self, name: &str, v: &Value) -> DecodeError {
        DecodeError::Shape(format!("{}.{name}: unexpected value {v:?}", self.what))
    }

    pub(crate) fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn opt_string(&mut self, name: &str) -> Result<Option<String>, DecodeError> {
        match unwrap_union(self.take(name)?) {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn opt_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, DecodeError> {
        match unwrap_union(self.take(name)?) {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b)),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn long(&mut self, name: &str) -> Result<i64, DecodeError> {
        match self.take(name)? {
            Value::Long(n) | Value::TimestampMicros(n) => Ok(n),
            Value::Int(n) => Ok(n.into()),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn opt_micros(&mut self, name: &str) -> Result<Option<i64>, DecodeError> {
        match unwrap_union(self.take(name)?) {
            Value::Null => Ok(None),
            Value::Long(n) | Value::TimestampMicros(n) => Ok(Some(n)),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn int(&mut self, name: &str) -> Result<i32, DecodeError> {
        match self.take(name)? {
            Value::Int(n) => Ok(n),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn double(&mut self, name: &str) -> Result<f64, DecodeError> {
        match self.take(name)? {
            Value::Double(n) => Ok(n),
            Value::Float(n) => Ok(n.into()),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn float(&mut self, name: &str) -> Result<f32, DecodeError> {
        match self.take(name)? {
            Value::Float(n) => Ok(n),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn boolean(&mut self, name: &str) -> Result<bool, DecodeError> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn array(&mut self, name: &str) -> Result<Vec<Value>, DecodeError> {
        match self.take(name)? {
            Value::Array(a) => Ok(a),
            v => Err(self.bad(name, &v)),
        }
    }

    pub(crate) fn strings(&mut self, name: &str) -> Result<Vec<String>, DecodeError> {
        let items = self.array(name)?;
        items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => Err(self.bad(name, &v)),
            })
            .collect()
    }

    pub(crate) fn record(&mut self, name: &str, what: &'static str) -> Result<Fields, DecodeError> {
        let v = self.take(name)?;
        Fields::new(what, v)
    }

    /// Takes a `["null", record]` field.
    pub(crate) fn opt_record(
        &mut self,
        name: &str,
        what: &'static str,
    ) -> Result<Option<Fields>, DecodeError> {
        match unwrap_union(self.take(name)?) {
            Value::Null => Ok(None),
            v => Fields::new(what, v).map(Some),
        }
    }

    /// Takes a union-of-records field; returns the variant's record name and its fields.
    pub(crate) fn variant(
        &mut self,
        name: &str,
        names: &[String],
    ) -> Result<(String, Value), DecodeError> {
        match self.take(name)? {
            Value::Union(idx, inner) => {
                let variant = names.get(idx as usize).cloned().ok_or_else(|| {
                    DecodeError::Shape(format!(
                        "{}.{name}: union index {idx} out of range",
                        self.what
                    ))
                })?;
                Ok((variant, *inner))
            }
            v => Err(self.bad(name, &v)),
        }
    }
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        v => v,
    }
}
