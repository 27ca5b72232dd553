//! Lets the `ceg4n` binary and tests find the provisioned libz3 at run time (rpath), so no
//! LD_LIBRARY_PATH is needed. The library itself is linked by z3-sys (see .cargo/config.toml).
fn main() {
    println!("cargo:rerun-if-env-changed=Z3_LIBRARY_PATH_OVERRIDE");
    if let Ok(dir) = std::env::var("Z3_LIBRARY_PATH_OVERRIDE") {
        if !std::path::Path::new(&dir).join("libz3.so").exists() {
            println!(
                "cargo:warning=libz3 not found in {dir}: run scripts/provision-z3.sh (or `make test`)"
            );
        }
        // The real location (.deps/z3 links to it, outside the checkout): the binary keeps
        // finding libz3 when installed elsewhere or when the checkout moves.
        let real = std::fs::canonicalize(&dir).map_or(dir, |p| p.display().to_string());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{real}");
    }
}
