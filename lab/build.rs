//! Embeds the console's built page (`console/dist/`, built by Vite through `bash scripts/console.sh`) into the lab
//! binary: a table of every file with `include_bytes!`. Without a built page the build fails and names the command;
//! it never embeds a placeholder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let dist = manifest.join("../console/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    println!(
        "cargo:rerun-if-changed={}",
        dist.join("index.html").display()
    );
    println!("cargo:rerun-if-changed={}", dist.join("assets").display());
    if !dist.join("index.html").is_file() {
        panic!(
            "\n\nthe lab console's page is not built: {} is missing.\n\
             Build it with `bash scripts/console.sh` (Node packages from console/package-lock.json, then Vite), \
             or run `bash scripts/setup.sh`, which does it.\n\n",
            dist.join("index.html").display()
        );
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from(
        "/// Every file of console/dist: (path relative to it, with `/`; contents).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (relative, path) in &files {
        // Every file is watched too: a rebuilt bundle with the same names changes only their contents.
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            table,
            "    ({relative:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("console_assets.rs");
    std::fs::write(&out, table).expect("write the asset table");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((relative, path));
        }
    }
}
