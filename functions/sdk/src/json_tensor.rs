//! Tensors written as JSON numbers: flat or nested (row-major) arrays.

/// Flattens `value` (a number, or arrays of numbers at most 8 deep) into `out` and returns the
/// shape its nesting gives (`[]` for a bare number). Ragged arrays are an error.
pub fn flatten(value: &serde_json::Value, out: &mut Vec<f64>) -> Result<Vec<usize>, String> {
    flatten_at(value, 0, out)
}

fn flatten_at(value: &serde_json::Value, depth: usize, out: &mut Vec<f64>) -> Result<Vec<usize>, String> {
    match value {
        serde_json::Value::Number(n) => {
            out.push(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?);
            Ok(Vec::new())
        }
        serde_json::Value::Array(items) if depth < 8 => {
            let mut inner: Option<Vec<usize>> = None;
            for item in items {
                let shape = flatten_at(item, depth + 1, out)?;
                if inner.as_ref().is_some_and(|s| *s != shape) {
                    return Err("nested arrays are ragged".into());
                }
                inner = Some(shape);
            }
            let mut shape = vec![items.len()];
            shape.extend(inner.unwrap_or_default());
            Ok(shape)
        }
        serde_json::Value::Array(_) => Err("arrays are nested more than 8 deep".into()),
        other => Err(format!("data must be numbers or arrays of numbers, found {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::flatten;

    #[test]
    fn nested_and_flat() {
        let mut out = Vec::new();
        assert_eq!(flatten(&serde_json::json!([[1, 2, 3], [4, 5, 6]]), &mut out).unwrap(), vec![2, 3]);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(flatten(&serde_json::json!([[1, 2], [3]]), &mut Vec::new()).unwrap_err().contains("ragged"));
        assert!(flatten(&serde_json::json!(["a"]), &mut Vec::new()).unwrap_err().contains("\"a\""));
    }
}
