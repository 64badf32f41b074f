//! `sqlx::migrate!` embeds the migrations at compile time, and cargo does not know it read
//! them: without this, a new migration file alone (no Rust change) builds a gateway without it.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
