//! Which inputs to read, and how to open each as a stream of decompressed bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;

use super::reader::Compression;

/// Where an input's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

/// One capture input, with the name the user knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The path as given (or as found below a folder that was given), `-` for stdin.
    pub display: String,
    pub source: InputSource,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// Legacy pcap magics in both byte orders: microsecond, nanosecond, and the "modified"
/// (Kuznetsov) format.
const PCAP_MAGICS: [[u8; 4]; 6] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x34, 0xcd, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xcd, 0x34],
];

pub(crate) fn is_capture_magic(m: &[u8]) -> bool {
    m.starts_with(&PCAPNG_MAGIC) || PCAP_MAGICS.iter().any(|p| m.starts_with(p))
}

pub(crate) fn compression_of(m: &[u8]) -> Compression {
    if m.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if m.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Reads into `buf` until it is full or the stream ends; returns how many bytes were read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Wraps a reader so that every `read` fills the caller's buffer unless the stream ends.
///
/// pcap-parser refills its buffer with a single `read` and takes a zero-byte read as the end
/// of input; pipes and decompressors return short reads, so without this a block could be
/// taken for truncated. A read error (a corrupt gzip member, a cut zstd frame) is kept in
/// `error` and the stream ends there, so that the bytes before it are still handed on and the
/// capture reader can report the error with the offset where it struck.
pub(crate) struct FullReader<R> {
    inner: R,
    pub(crate) error: Arc<Mutex<Option<String>>>,
    failed: bool,
}

impl<R> FullReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        FullReader {
            inner,
            error: Arc::new(Mutex::new(None)),
            failed: false,
        }
    }
}

impl<R: Read> Read for FullReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Ok(0);
        }
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match self.inner.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    if let Ok(mut slot) = self.error.lock() {
                        *slot = Some(e.to_string());
                    }
                    break;
                }
            }
        }
        Ok(filled)
    }
}

/// Opens an input and undoes its compression. Returns the decompressed stream, with its first
/// bytes already read back in front, and the compression found.
pub(crate) fn open_stream(
    source: &InputSource,
) -> io::Result<(Box<dyn Read + Send>, Compression, Arc<AtomicU64>)> {
    let counted = Arc::new(AtomicU64::new(0));
    let raw: Box<dyn Read + Send> = match source {
        InputSource::Stdin => Box::new(io::stdin()),
        InputSource::File(p) => Box::new(File::open(p)?),
    };
    let mut raw: Box<dyn Read + Send> = Box::new(CountingReader {
        inner: raw,
        count: Arc::clone(&counted),
    });
    let mut magic = [0u8; 4];
    let n = read_full(&mut raw, &mut magic)?;
    let magic = magic.get(..n).unwrap_or_default();
    let rejoined = io::Cursor::new(magic.to_vec()).chain(raw);
    let compression = compression_of(magic);
    let stream: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(MultiGzDecoder::new(rejoined)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(rejoined)?),
        Compression::None => Box::new(rejoined),
    };
    Ok((stream, compression, counted))
}

/// Counts the bytes read from the file or pipe itself (before decompression), for progress.
/// One atomic add per read call, and reads are a megabyte at a time.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Whether a file found below a folder is a capture: its magic bytes, or the magic bytes of
/// its decompressed content, are those of pcap or pcapng.
pub fn sniff_path(path: &Path) -> bool {
    let Ok((mut stream, _, _)) = open_stream(&InputSource::File(path.to_path_buf())) else {
        return false;
    };
    let mut magic = [0u8; 4];
    matches!(read_full(&mut stream, &mut magic), Ok(4)) && is_capture_magic(&magic)
}

/// Turns the command line's INPUT arguments into the list of inputs to read.
///
/// A file is always an input (a file that is no capture is reported when read). A folder is
/// walked recursively in name order, and only files recognised as captures by their magic
/// bytes are taken; symbolic links to folders are not followed, so a link loop cannot trap
/// the walk. Arguments that cannot be read are returned as errors, next to what could be.
pub fn expand_inputs(args: &[String]) -> (Vec<Input>, Vec<(String, io::Error)>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for arg in args {
        if arg == "-" {
            inputs.push(Input {
                display: "-".into(),
                source: InputSource::Stdin,
            });
            continue;
        }
        let path = PathBuf::from(arg);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk_folder(&path, &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input {
                display: arg.clone(),
                source: InputSource::File(path),
            }),
            Err(e) => errors.push((arg.clone(), e)),
        }
    }
    (inputs, errors)
}

fn walk_folder(dir: &Path, inputs: &mut Vec<Input>, errors: &mut Vec<(String, io::Error)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push((dir.display().to_string(), e));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let is_link = std::fs::symlink_metadata(&path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if !is_link {
                    walk_folder(&path, inputs, errors);
                }
            }
            Ok(m) if m.is_file() => {
                if sniff_path(&path) {
                    inputs.push(Input {
                        display: path.display().to_string(),
                        source: InputSource::File(path),
                    });
                }
            }
            Ok(_) => {}
            Err(e) => errors.push((path.display().to_string(), e)),
        }
    }
}
