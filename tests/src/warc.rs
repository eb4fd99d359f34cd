//! Reading the WARC files a worker wrote, for tests: each record as text, in order.

/// Every WARC record in `dir`, decompressed, in file and record order.
pub fn records(dir: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("warc dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let mut member = flate2::bufread::GzDecoder::new(rest);
            let mut text = Vec::new();
            member
                .read_to_end(&mut text)
                .expect("one gzip member per record");
            rest = member.into_inner();
            records.push(String::from_utf8_lossy(&text).into_owned());
        }
    }
    records
}

/// The response record of `path`.
pub fn response_of<'a>(records: &'a [String], base: &str, path: &str) -> &'a str {
    let uri = format!("WARC-Target-URI: {base}{path}\r\n");
    records
        .iter()
        .find(|r| r.contains("WARC-Type: response\r\n") && r.contains(&uri))
        .unwrap_or_else(|| panic!("no response record for {path}"))
}
