//! Just enough `multipart/form-data` to take one field from a form (`curl -F image=@x.png`).

/// Returns the contents of form field `name`.
pub fn file_field(content_type: &str, body: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("multipart/form-data without a boundary parameter")?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let start = find(rest, delimiter.as_bytes()).ok_or("multipart body has no opening boundary")?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").ok_or("malformed multipart body: expected CRLF after boundary")?;
        let header_end = find(rest, b"\r\n\r\n").ok_or("malformed multipart body: part without headers")?;
        let headers = String::from_utf8_lossy(&rest[..header_end]).to_string();
        rest = &rest[header_end + 4..];
        let closing = format!("\r\n{delimiter}");
        let end = find(rest, closing.as_bytes()).ok_or("malformed multipart body: part is not closed by the boundary")?;
        parts.push((headers, &rest[..end]));
        rest = &rest[end + closing.len()..];
    }
    let field_name = |headers: &str| {
        headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| l.split(';').find_map(|p| p.trim().strip_prefix("name=").map(|v| v.trim_matches('"').to_owned())))
    };
    if let Some((_, data)) = parts.iter().find(|(h, _)| field_name(h).as_deref() == Some(name)) {
        return Ok(data.to_vec());
    }
    let names: Vec<String> = parts.iter().filter_map(|(h, _)| field_name(h)).collect();
    Err(format!("the form has no '{name}' field (fields: {names:?}); send it as -F {name}=@picture.png"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::file_field;

    #[test]
    fn takes_the_named_field() {
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XY\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\r\n--XY--\r\n";
        assert_eq!(file_field("multipart/form-data; boundary=XY", body, "image").unwrap(), b"\x89PNG\r\n");
        assert!(file_field("multipart/form-data; boundary=XY", body, "photo").unwrap_err().contains("\"note\""));
        assert!(file_field("multipart/form-data", body, "image").is_err());
    }
}
