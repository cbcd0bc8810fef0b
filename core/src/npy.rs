//! Validation of `.npy` files received from workers (format version 1.0–3.0).
//!
//! A worker is not trusted to send well-formed arrays: the magic, the header and the
//! body length must agree before the coordinator stores a file that numpy will load.

/// What a valid `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// Larger headers are refused (numpy itself writes a few hundred bytes).
const MAX_HEADER_LEN: usize = 64 * 1024;

/// Checks an entire `.npy` file; returns its header or what is wrong with it.
pub fn validate_npy(bytes: &[u8]) -> Result<NpyInfo, String> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (bad magic)".to_owned());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header length".to_owned());
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (
                usize::try_from(len).map_err(|_| "header too long".to_owned())?,
                12,
            )
        }
        other => return Err(format!("unsupported .npy version {other}")),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(format!("header of {header_len} bytes is too long"));
    }
    let body_start = header_start + header_len;
    let header = bytes
        .get(header_start..body_start)
        .ok_or_else(|| "truncated header".to_owned())?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text".to_owned())?;
    let info = parse_header(header)?;
    let item_size = item_size(&info.descr)?;
    let count = info
        .shape
        .iter()
        .try_fold(1usize, |acc, dim| acc.checked_mul(*dim))
        .ok_or_else(|| "shape overflows".to_owned())?;
    let expected = count
        .checked_mul(item_size)
        .ok_or_else(|| "size overflows".to_owned())?;
    let body = bytes.len() - body_start;
    if body != expected {
        return Err(format!(
            "body has {body} bytes but shape {:?} of {} needs {expected}",
            info.shape, info.descr
        ));
    }
    Ok(info)
}

fn parse_header(header: &str) -> Result<NpyInfo, String> {
    // numpy reads the header as a Python dict literal: anything else fails to load there.
    let trimmed = header.trim_end_matches([' ', '\n', '\0']);
    if !trimmed.starts_with('{') || !trimmed.ends_with('}') {
        return Err("header is not a dict".to_owned());
    }
    let descr = quoted_value(header, "descr").ok_or_else(|| "header has no descr".to_owned())?;
    let fortran_order = match raw_value(header, "fortran_order") {
        Some(v) if is_word(v, "True") => true,
        Some(v) if is_word(v, "False") => false,
        _ => return Err("header has no fortran_order".to_owned()),
    };
    let shape_text = raw_value(header, "shape").ok_or_else(|| "header has no shape".to_owned())?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .ok_or_else(|| "shape is not a tuple".to_owned())?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<usize>()
                .map_err(|_| format!("bad dimension {part:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyInfo {
        descr,
        fortran_order,
        shape,
    })
}

/// `text` starts with `word` as a whole token (`Falsey` is not `False`).
fn is_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|rest| rest.starts_with([',', '}', ' ']))
}

fn raw_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

fn quoted_value(header: &str, key: &str) -> Option<String> {
    let rest = raw_value(header, key)?;
    let rest = rest.strip_prefix('\'')?;
    Some(rest[..rest.find('\'')?].to_owned())
}

fn item_size(descr: &str) -> Result<usize, String> {
    let kind_and_size = descr.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = kind_and_size.chars();
    let kind = chars.next().ok_or_else(|| "empty descr".to_owned())?;
    if !matches!(kind, 'f' | 'i' | 'u' | 'b' | 'c') {
        return Err(format!("unsupported dtype {descr:?} (numbers only)"));
    }
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("unsupported dtype {descr:?}"))?;
    if !matches!(size, 1 | 2 | 4 | 8 | 16) {
        return Err(format!("unsupported dtype {descr:?}"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, body: &[u8]) -> Vec<u8> {
        let mut header = header.to_owned();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn accepts_well_formed_arrays() {
        let file = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 48],
        );
        let info = validate_npy(&file).expect("valid");
        assert_eq!(info.shape, vec![2, 3]);
        let scalar = npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            &[0; 8],
        );
        assert_eq!(
            validate_npy(&scalar).expect("valid").shape,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn refuses_bad_magic_truncation_and_wrong_shape() {
        assert!(validate_npy(b"not numpy at all").is_err());
        let truncated = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
            &[0; 31],
        );
        assert!(validate_npy(&truncated).is_err());
        let object = npy(
            "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(validate_npy(&object).is_err());
        let not_a_word = npy(
            "{'descr': '<f8', 'fortran_order': Falsey, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(validate_npy(&not_a_word).is_err());
        let not_a_dict = npy(
            "'descr': '<f8', 'fortran_order': False, 'shape': (1,)",
            &[0; 8],
        );
        assert!(validate_npy(&not_a_dict).is_err());
        let huge = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999, 99999999999), }",
            &[],
        );
        assert!(validate_npy(&huge).is_err());
    }
}
