//! `.npy` files, the format PyTorch and numpy users exchange arrays in. npyz parses the header;
//! sizes are checked here before any data is read, so a hostile file cannot make the reader
//! allocate or overflow.

use std::io::Write;
use std::path::Path;

use crate::DType;

/// A row-major array read from a `.npy` file.
pub struct Array {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn dtype_of(descr: &str) -> Option<DType> {
    Some(match descr {
        "<f4" => DType::Float,
        "<f8" => DType::Double,
        "<f2" => DType::Half,
        "<i8" => DType::Long,
        "<i4" => DType::Int,
        "<i2" => DType::Short,
        "|i1" => DType::Char,
        "|u1" => DType::Byte,
        "|b1" => DType::Bool,
        "<u2" => DType::UInt16,
        "<u4" => DType::UInt32,
        "<u8" => DType::UInt64,
        _ => return None,
    })
}

fn descr_of(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::Float => "<f4",
        DType::Double => "<f8",
        DType::Half => "<f2",
        DType::Long => "<i8",
        DType::Int => "<i4",
        DType::Short => "<i2",
        DType::Char => "|i1",
        DType::Byte => "|u1",
        DType::Bool => "|b1",
        DType::UInt16 => "<u2",
        DType::UInt32 => "<u4",
        DType::UInt64 => "<u8",
        _ => return None,
    })
}

/// Reads a `.npy` file (little-endian or byte-sized dtypes, C or Fortran order).
pub fn read(path: &Path) -> Result<Array, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|why| format!("{}: not a readable .npy file: {why}", path.display()))
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    let bad = |why: &str| why.to_string();
    let mut cursor = std::io::Cursor::new(bytes);
    // npyz's header parser multiplies shape entries without overflow checks; keep any panic of it
    // from escaping as a crash.
    let header = std::panic::catch_unwind(move || {
        let h = npyz::NpyHeader::from_reader(&mut cursor);
        (h, cursor.position())
    });
    let (header, data_start) = match header {
        Ok((Ok(h), pos)) => (h, pos as usize),
        Ok((Err(e), _)) => return Err(bad(&e.to_string())),
        Err(_) => return Err(bad("malformed header")),
    };
    let descr = match header.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(bad(&format!("unsupported dtype {}", other.descr()))),
    };
    let dtype = dtype_of(&descr).ok_or_else(|| bad(&format!("unsupported dtype {descr}")))?;
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad("dimension too large")))
        .collect::<Result<_, _>>()?;
    if shape.len() > 16 {
        return Err(bad("more than 16 dimensions"));
    }
    let elem = dtype.element_size().unwrap_or(1);
    let nbytes = shape.iter().try_fold(elem, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("size overflows"))?;
    let data = bytes.get(data_start..).ok_or_else(|| bad("truncated"))?;
    if data.len() < nbytes {
        return Err(bad(&format!("{} data bytes, the header promises {nbytes}", data.len())));
    }
    let mut data = data[..nbytes].to_vec();
    if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        return Err(bad("bool data other than 0 and 1"));
    }
    if header.order() == npyz::Order::Fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape, elem);
    }
    Ok(Array { dtype, shape, data })
}

/// Column-major to row-major.
fn fortran_to_c(data: &[u8], shape: &[usize], elem: usize) -> Vec<u8> {
    let rank = shape.len();
    let order: Vec<u8> = (0..rank as u8).rev().collect();
    let Some(s) = crate::kernels::Shape::new(shape) else { return data.to_vec() };
    let Some(o) = crate::kernels::DimOrder::new(&order) else { return data.to_vec() };
    let src = crate::kernels::shape::strides_for(&s, &o);
    let dst = crate::kernels::shape::strides_for(&s, &crate::kernels::DimOrder::contiguous(rank));
    let mut out = vec![0u8; data.len()];
    for [d, s] in crate::kernels::shape::StridedIter::new(&s, [dst, src]) {
        if let (Some(to), Some(from)) = (out.get_mut(d * elem..(d + 1) * elem), data.get(s * elem..(s + 1) * elem)) {
            to.copy_from_slice(from);
        }
    }
    out
}

/// Writes row-major `data` as a `.npy` file. bfloat16 (which numpy lacks) is written as float32.
pub fn write(path: &Path, dtype: DType, shape: &[usize], data: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let (dtype, data) = if dtype == DType::BFloat16 {
        let widened: Vec<f32> =
            data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        (DType::Float, bytemuck::cast_slice(&widened).to_vec())
    } else {
        (dtype, data.to_vec())
    };
    let descr =
        descr_of(dtype).ok_or_else(|| format!("{}: dtype {dtype} cannot be written as .npy", path.display()))?;
    // Header: magic, version 1.0, header length, dict padded so data starts at a multiple of 64.
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    dict.push('\n');
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(b"\x93NUMPY\x01\x00").map_err(err)?;
    let len = u16::try_from(dict.len()).map_err(|_| format!("{}: header too long", path.display()))?;
    f.write_all(&len.to_le_bytes()).map_err(err)?;
    f.write_all(dict.as_bytes()).map_err(err)?;
    f.write_all(&data).map_err(err)?;
    Ok(())
}

/// Formats up to `n` leading elements of row-major data, for summaries.
pub fn preview(dtype: DType, data: &[u8], n: usize) -> String {
    let vals = crate::bundled::as_f64(data, dtype);
    let shown: Vec<String> = vals
        .iter()
        .take(n)
        .map(|v| if dtype.is_floating_point() { format!("{v:.6}") } else { format!("{v}") })
        .collect();
    let more = if vals.len() > n { ", ..." } else { "" };
    format!("[{}{more}]", shown.join(", "))
}
