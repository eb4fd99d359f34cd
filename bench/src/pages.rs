//! Realistic benchmark pages: dense markup (nested divs, lists, spans, attributes; about one
//! tag per 38 bytes), 30 to 100 KB each, exactly 50 links, flat paths `/p/{i}.html`.
//!
//! Parse cost grows with tag density, not bytes, so the markup is what a real site's is; the
//! bulk is one shared block, sliced per page, so a 20,000-page site needs little memory.

/// Links on every page.
pub const LINKS_PER_PAGE: usize = 50;
const MIN_BYTES: usize = 30 * 1024;
const MAX_BYTES: usize = 100 * 1024;

/// The benchmark site: `pages` pages, each linking to the next (so all are reachable from
/// page 0) and to 49 others.
#[derive(Debug)]
pub struct Site {
    /// Number of pages.
    pub pages: usize,
    block: Vec<u8>,
    /// Offsets in `block` where a unit of markup ends: pages are cut there.
    cuts: Vec<usize>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: a quick, deterministic scrambler.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: [&str; 12] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
];

impl Site {
    /// Builds the site's shared markup.
    pub fn new(pages: usize) -> Site {
        let mut block = Vec::with_capacity(MAX_BYTES + 4096);
        let mut cuts = Vec::new();
        let mut k = 0u64;
        while block.len() < MAX_BYTES {
            let w = |n: u64| WORDS[(mix(k * 31 + n) % WORDS.len() as u64) as usize];
            let unit = format!(
                "<div class=\"row item-{k}\" data-id=\"{k}\"><div class=\"col-md-4 card\"><h3 class=\"title\"><span>{} {}</span></h3>\
                 <ul class=\"meta\"><li class=\"a\"><span class=\"k\">{}</span> <em>{}</em></li><li class=\"b\"><span>{}</span></li>\
                 <li><i class=\"icon\"></i><span class=\"v\">{k}</span></li></ul><p class=\"text\">{} {} {} {} <b>{}</b> {} {} <span class=\"x\">{}</span> {}.</p>\
                 <div class=\"foot\"><span class=\"tag\">{}</span><span class=\"tag\">{}</span><img src=\"/i/{k}.png\" alt=\"{}\"></div></div></div>\n",
                w(1),
                w(2),
                w(3),
                w(4),
                w(5),
                w(6),
                w(7),
                w(14),
                w(15),
                w(8),
                w(9),
                w(16),
                w(10),
                w(17),
                w(11),
                w(12),
                w(13)
            );
            block.extend_from_slice(unit.as_bytes());
            cuts.push(block.len());
            k += 1;
        }
        Site {
            pages: pages.max(2),
            block,
            cuts,
        }
    }

    /// The 50 distinct pages page `i` links to; the first is always the next page.
    pub fn links(&self, i: usize) -> Vec<usize> {
        let n = self.pages;
        let mut out = vec![(i + 1) % n];
        let mut seed = i as u64;
        while out.len() < LINKS_PER_PAGE.min(n - 1) {
            seed = mix(seed ^ 0xabcd);
            let j = (seed % n as u64) as usize;
            if j != i && !out.contains(&j) {
                out.push(j);
            }
        }
        out
    }

    /// The HTML of page `i`: the shared markup cut at a page-specific length, with its links
    /// spread through it.
    pub fn page(&self, i: usize) -> Vec<u8> {
        // Skewed towards small pages: sizes from 30 to 100 KB, about 53 KB on average.
        let u = (mix(i as u64) % 1_000) as usize;
        let target = MIN_BYTES + (MAX_BYTES - MIN_BYTES) * u * u / 1_000_000;
        let end = self
            .cuts
            .iter()
            .copied()
            .find(|&c| c >= target)
            .unwrap_or(self.block.len());
        let cut = self.cuts.partition_point(|&c| c < end) + 1;
        let links = self.links(i);
        let mut html = Vec::with_capacity(end + links.len() * 64 + 512);
        html.extend_from_slice(
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Benchmark page {i}</title>\
                 <meta name=\"description\" content=\"Page {i} of the benchmark site\"></head><body><div class=\"container\">\n"
            )
            .as_bytes(),
        );
        // Five groups of ten links, spread evenly through the markup.
        let groups = 5;
        let mut start = 0;
        for g in 0..groups {
            let stop = if g + 1 == groups {
                end
            } else {
                self.cuts[(cut * (g + 1) / groups).saturating_sub(1)]
            };
            html.extend_from_slice(&self.block[start..stop.max(start)]);
            start = stop.max(start);
            html.extend_from_slice(b"<nav class=\"links\"><ul>");
            for j in links
                .iter()
                .skip(g * LINKS_PER_PAGE / groups)
                .take(LINKS_PER_PAGE / groups)
            {
                html.extend_from_slice(
                    format!("<li><a href=\"/p/{j}.html\" class=\"link\">Page {j}</a></li>")
                        .as_bytes(),
                );
            }
            html.extend_from_slice(b"</ul></nav>\n");
        }
        html.extend_from_slice(b"</div></body></html>\n");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_average_about_fifty_kilobytes() {
        let site = Site::new(2_000);
        let mean = (0..2_000).map(|i| site.page(i).len()).sum::<usize>() / 2_000;
        assert!((45_000..=60_000).contains(&mean), "mean page size {mean}");
    }

    #[test]
    fn pages_are_dense_sized_and_linked_as_promised() {
        let site = Site::new(1000);
        let mut total = 0;
        for i in [0, 1, 7, 500, 999] {
            let page = site.page(i);
            let html = String::from_utf8(page.clone()).expect("utf8");
            assert!(
                (MIN_BYTES..=MAX_BYTES + 8192).contains(&page.len()),
                "page {i} is {} bytes",
                page.len()
            );
            assert_eq!(html.matches("<a href=").count(), LINKS_PER_PAGE, "page {i}");
            let tags = html
                .as_bytes()
                .windows(2)
                .filter(|w| w[0] == b'<' && w[1].is_ascii_alphabetic())
                .count();
            let per_tag = page.len() / tags;
            assert!(
                (25..=50).contains(&per_tag),
                "page {i}: one tag per {per_tag} bytes"
            );
            total += page.len();
        }
        assert!(total > 5 * MIN_BYTES);
        assert_eq!(
            site.links(3)[0],
            4,
            "every page links to the next, so all are reachable"
        );
    }
}
