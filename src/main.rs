//! `failoverd`: see the library for everything; this only hands over.

fn main() {
    std::process::exit(failoverd::cli::main());
}
