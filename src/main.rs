//! `failoverd`: see the library for everything; this only hands over,
//! after raising the soft open-file limit to the hard one (issue 22 item 5:
//! every client connection is a descriptor). The result is kept and logged
//! once logging is up, as the router starts (`router::serve`).

fn main() {
    let _ = failoverd::http::raise_open_file_limit();
    std::process::exit(failoverd::cli::main());
}
