//! What the host checks in ONNX bytes before any engine sees them: model bytes are data, never
//! paths.
//!
//! An ONNX tensor may keep its values in an *external* file (`data_location: EXTERNAL`, with a
//! `location` key in `external_data`). ONNX Runtime resolves such a path against the host
//! process's working directory, so a guest's `load(bytes)` could read the host's files through an
//! output. Every model, guest-supplied or mounted, is refused here if any tensor in it (graph
//! initializers, sparse initializers, node attributes, subgraphs, local functions, training
//! graphs) refers to external data.
//!
//! The check reads the protobuf wire format directly: no copy of the model, no dependency, and
//! bytes that are not a well-formed message are refused as well, so no engine's more lenient
//! parser can see a tensor this walk did not.

/// Why model bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelBytesError {
    /// A tensor keeps its values outside the model.
    #[error(
        "tensor '{tensor}' refers to external data; models must carry their weights inline (external data would be read from the host's files)"
    )]
    ExternalData {
        /// The tensor's name, as the model gives it.
        tensor: String,
    },
    /// Not a well-formed ONNX protobuf.
    #[error("not an ONNX model: {0}")]
    Malformed(&'static str),
}

/// The messages the walk descends into, by the fields that may hold tensors.
#[derive(Clone, Copy)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
}

impl Message {
    /// The message a length-delimited field of this message holds, if the walk looks inside it.
    fn child(self, field: u64) -> Option<Message> {
        use Message::*;
        Some(match (self, field) {
            (Model, 7) => Graph,
            (Model, 20) => TrainingInfo,
            (Model, 25) => Function,
            (Graph, 1) => Node,
            (Graph, 5) => Tensor,
            (Graph, 15) => SparseTensor,
            (Node, 5) => Attribute,
            (Attribute, 5 | 10) => Tensor,
            (Attribute, 6 | 11) => Graph,
            (Attribute, 22 | 23) => SparseTensor,
            (SparseTensor, 1 | 2) => Tensor,
            (Function, 7) => Node,
            (Function, 11) => Attribute,
            (TrainingInfo, 1 | 2) => Graph,
            _ => return None,
        })
    }
}

/// Field numbers inside `TensorProto`.
const TENSOR_NAME: u64 = 8;
const TENSOR_EXTERNAL_DATA: u64 = 13;
const TENSOR_DATA_LOCATION: u64 = 14;
/// How deep subgraphs may nest; real models nest a few levels.
const MAX_DEPTH: usize = 64;

/// Refuses ONNX bytes that refer to external data or do not parse as a protobuf message.
pub fn check_model_bytes(model: &[u8]) -> Result<(), ModelBytesError> {
    walk(model, Message::Model, 0)
}

fn walk(bytes: &[u8], message: Message, depth: usize) -> Result<(), ModelBytesError> {
    if depth > MAX_DEPTH {
        return Err(ModelBytesError::Malformed("subgraphs nested too deep"));
    }
    let mut reader = Reader(bytes);
    let mut name = String::new();
    let mut external = false;
    while !reader.0.is_empty() {
        let key = reader.varint()?;
        // Protobuf's own parsers read a tag as 32 bits: a longer one would name another field
        // there than here, so it is refused, as are field numbers protobuf does not allow.
        if key > u64::from(u32::MAX) || !(1..1 << 29).contains(&(key >> 3)) {
            return Err(ModelBytesError::Malformed("invalid field tag"));
        }
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                let value = reader.varint()?;
                // An enum is read as its low 32 bits; anything but the default (inline) counts.
                if matches!(message, Message::Tensor) && field == TENSOR_DATA_LOCATION && value as u32 != 0 {
                    external = true;
                }
            }
            1 => reader.skip(8)?,
            5 => reader.skip(4)?,
            2 => {
                let len = usize::try_from(reader.varint()?).map_err(|_| ModelBytesError::Malformed("length overflows"))?;
                let body = reader.take(len)?;
                if let Message::Tensor = message {
                    match field {
                        TENSOR_EXTERNAL_DATA => external = true,
                        TENSOR_NAME => name = String::from_utf8_lossy(body).into_owned(),
                        _ => {}
                    }
                } else if let Some(child) = message.child(field) {
                    walk(body, child, depth + 1)?;
                }
            }
            _ => return Err(ModelBytesError::Malformed("unsupported protobuf wire type")),
        }
    }
    if external {
        return Err(ModelBytesError::ExternalData { tensor: name });
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ModelBytesError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or(ModelBytesError::Malformed("truncated"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ModelBytesError::Malformed("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ModelBytesError> {
        if len > self.0.len() {
            return Err(ModelBytesError::Malformed("truncated"));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn skip(&mut self, len: usize) -> Result<(), ModelBytesError> {
        self.take(len).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::onnx_bytes::{field, int};

    /// A model whose one tensor, `x` (16 bytes), lives where `where_` says: inline, or in the
    /// file `spin.toml` (as an initializer, or as a node attribute inside a subgraph).
    fn model(external: bool, in_subgraph: bool) -> Vec<u8> {
        let mut tensor = [int(1, 16), int(2, 2), field(8, b"x")].concat();
        if external {
            tensor.extend(field(13, &[field(1, b"location"), field(2, b"spin.toml")].concat()));
            tensor.extend(int(14, 1));
        } else {
            tensor.extend(field(9, &[7u8; 16]));
        }
        let graph = if in_subgraph {
            let inner = field(5, &tensor);
            let attribute = [field(1, b"then_branch"), field(6, &inner)].concat();
            field(1, &[field(4, b"If"), field(5, &attribute)].concat())
        } else {
            [field(1, &[field(1, b"x"), field(2, b"y"), field(4, b"Identity")].concat()), field(5, &tensor)].concat()
        };
        [int(1, 8), field(7, &graph)].concat()
    }

    #[test]
    fn inline_tensors_pass() {
        assert_eq!(check_model_bytes(&model(false, false)), Ok(()));
        assert_eq!(check_model_bytes(&model(false, true)), Ok(()));
        let cifar10 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/cifar10/model.onnx")).unwrap();
        assert_eq!(check_model_bytes(&cifar10), Ok(()));
    }

    #[test]
    fn external_data_is_refused_wherever_the_tensor_is() {
        for in_subgraph in [false, true] {
            let err = check_model_bytes(&model(true, in_subgraph)).unwrap_err();
            assert_eq!(err, ModelBytesError::ExternalData { tensor: "x".into() });
        }
    }

    #[test]
    fn tags_and_enums_are_read_as_protobuf_reads_them() {
        // external_data's tag (0x6a) padded to five bytes with a bit above 32: protobuf would read
        // field 13; refused rather than skipped as some other field.
        let mut padded = model(false, false);
        padded.extend([0xea, 0x80, 0x80, 0x80, 0x10, 0]);
        assert!(matches!(check_model_bytes(&field(7, &field(5, &padded))), Err(ModelBytesError::Malformed(_))));
        // data_location = 2^32 + 1 is EXTERNAL once cut to 32 bits.
        let tensor = [field(8, b"x"), int(14, (1 << 32) + 1)].concat();
        let err = check_model_bytes(&[int(1, 8), field(7, &field(5, &tensor))].concat()).unwrap_err();
        assert_eq!(err, ModelBytesError::ExternalData { tensor: "x".into() });
        assert!(check_model_bytes(&[0x00, 0x01]).is_err(), "field 0");
    }

    #[test]
    fn bytes_that_are_no_message_are_refused() {
        let whole = model(false, false);
        assert!(matches!(check_model_bytes(&whole[..whole.len() - 3]), Err(ModelBytesError::Malformed(_))));
        assert!(matches!(check_model_bytes(b"\x0b"), Err(ModelBytesError::Malformed(_))));
        let mut deep = model(false, false);
        for _ in 0..100 {
            deep = field(1, &[field(5, &[field(6, &deep)].concat())].concat());
        }
        assert!(check_model_bytes(&field(7, &deep)).is_err());
    }
}
