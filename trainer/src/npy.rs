//! Writing results: float64 `.npy` vectors and other files, replaced atomically
//! (temporary file, fsync, rename, fsync of the directory) so a reader never sees a
//! torn file.

use std::io::Write;
use std::path::Path;

use crate::TrainError;

/// The `.npy` bytes of a 1-D little-endian float64 array (format version 1.0).
pub fn encode_f64(values: &[f64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 8 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp).map_err(TrainError::io(&temp))?;
    file.write_all(bytes).map_err(TrainError::io(&temp))?;
    file.sync_all().map_err(TrainError::io(&temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(TrainError::io(path))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(TrainError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follow() {
        let bytes = encode_f64(&[1.5, -2.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_len + 16);
        assert_eq!(
            &bytes[10 + header_len..10 + header_len + 8],
            &1.5f64.to_le_bytes()
        );
    }
}
