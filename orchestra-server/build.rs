//! Embeds the web console (`ui/dist/`, built by `scripts/build-ui` and
//! committed) into the binary: generates `$OUT_DIR/ui_assets.rs`, a table of
//! every file with its bytes (`include_bytes!`) and a content hash for ETags.
//! Building the server needs no Node; a missing `ui/dist/` embeds nothing and
//! `/ui` says so.

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("ui").join("dist");
    // A directory here makes cargo rebuild when any file under it changes.
    println!("cargo:rerun-if-changed={}", dist.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();

    let mut out = String::from(
        "/// Every file of the built console: (path under /ui/, bytes, ETag).\n\
         pub static UI_ASSETS: &[(&str, &[u8], &str)] = &[\n",
    );
    for (rel, abs) in &files {
        let bytes = fs::read(abs).unwrap_or_else(|e| panic!("read {}: {e}", abs.display()));
        let etag = format!("\"{:016x}\"", fnv1a(&bytes));
        let _ = writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?}), {etag:?}),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    fs::write(out_dir.join("ui_assets.rs"), out)
        .unwrap_or_else(|e| panic!("write ui_assets.rs: {e}"));
}

/// Files under `dir`, as (path relative to `root` with `/` separators, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((rel, path));
        }
    }
}

/// 64-bit FNV-1a: stable across builds and toolchains, enough for an ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
