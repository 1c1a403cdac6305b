//! Charts drawn on the server as SVG with `plotters` (its SVG backend
//! only, no font feature: see `DESIGN.md`), put inline in the page.
//!
//! plotters writes presentation attributes (`fill`, `stroke`,
//! `font-family`), never `style` attributes or scripts, so an inline chart
//! passes the console's strict Content-Security-Policy; it escapes the
//! text it writes, and the title this module adds is escaped by maud's
//! escaper. Each chart is `role="img"` with a `<title>`; the page's table
//! of the same numbers is its accessible equivalent.

use std::fmt::Write;

use maud::{Markup, PreEscaped, html};
use plotters::prelude::*;

/// Series drawn in their own colour; the rest are summed as "other".
pub const MAX_SERIES: usize = 9;

/// The palette (Tableau 10, distinguishable and dark enough on white);
/// the stylesheet's legend swatches `.s0`…`.s9` use the same colours.
const PALETTE: [RGBColor; MAX_SERIES + 1] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const MISSING: RGBColor = RGBColor(178, 24, 43);
const INK: RGBColor = RGBColor(33, 37, 41);

/// One group's value per period (USD; 0 where the group has no point).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// A stacked bar chart of cost per period.
#[derive(Debug, Clone)]
pub struct StackedBars<'a> {
    /// Unique in the page (the `<title>`'s id).
    pub id: &'a str,
    /// What the chart shows, read by screen readers (`<title>`).
    pub title: &'a str,
    /// One label per period (`2026-11-26 17:00`).
    pub labels: &'a [String],
    pub series: Vec<Series>,
    /// Periods with a resource whose price is unknown: marked with a red
    /// `!` above the bar (their bars hold only the priced part).
    pub price_missing: &'a [bool],
}

impl StackedBars<'_> {
    /// The chart and its legend. Series beyond [`MAX_SERIES`] (the
    /// smallest by total) are drawn as one "other" series.
    pub fn render(self) -> Markup {
        let series = fold_small(self.series, self.labels.len());
        let svg = match draw(&series, self.labels, self.price_missing) {
            Ok(svg) => titled(&svg, self.id, self.title),
            Err(e) => {
                tracing::error!(error = %e, "chart not drawn");
                return html! { p.note { "The chart could not be drawn; the table below has the numbers." } };
            }
        };
        html! {
            figure.chart {
                (PreEscaped(svg))
                figcaption {
                    ul.legend {
                        @for (i, s) in series.iter().enumerate() {
                            li { span class={"sw s" (i)} {} (s.name) }
                        }
                        @if self.price_missing.iter().any(|m| *m) {
                            li { span.bang { "!" } "price missing in that period" }
                        }
                    }
                }
            }
        }
    }
}

/// The largest [`MAX_SERIES`] series by total, then "other".
fn fold_small(mut series: Vec<Series>, n: usize) -> Vec<Series> {
    if series.len() <= MAX_SERIES + 1 {
        return series;
    }
    let total = |s: &Series| s.values.iter().sum::<f64>();
    series.sort_by(|a, b| total(b).total_cmp(&total(a)));
    let rest = series.split_off(MAX_SERIES);
    let mut other = Series {
        name: format!("other ({} groups)", rest.len()),
        values: vec![0.0; n],
    };
    for s in rest {
        for (o, v) in other.values.iter_mut().zip(s.values) {
            *o += v;
        }
    }
    series.push(other);
    series
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 320;

fn draw(series: &[Series], labels: &[String], missing: &[bool]) -> anyhow::Result<String> {
    let n = labels.len().max(1);
    let totals: Vec<f64> = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.12 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(anyhow_of)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(anyhow_of)?;
        let label_of = |x: &f64| {
            let i = x.floor();
            if (x - i).abs() < 1e-9 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(6))
            .y_labels(6)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .y_desc("USD")
            .label_style(("sans-serif", 14).into_font().color(&INK))
            .axis_style(INK)
            .draw()
            .map_err(anyhow_of)?;
        let mut bars = Vec::new();
        for i in 0..n {
            let mut base = 0.0;
            for (j, s) in series.iter().enumerate() {
                let v = s.values.get(i).copied().unwrap_or(0.0);
                if v > 0.0 {
                    let x = i as f64;
                    bars.push(Rectangle::new(
                        [(x + 0.1, base), (x + 0.9, base + v)],
                        PALETTE[j % PALETTE.len()].filled(),
                    ));
                    base += v;
                }
            }
        }
        chart.draw_series(bars).map_err(anyhow_of)?;
        let marks = missing
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| {
                Text::new(
                    "!",
                    (i as f64 + 0.5, totals.get(i).copied().unwrap_or(0.0)),
                    ("sans-serif", 18).into_font().color(&MISSING),
                )
            });
        chart.draw_series(marks).map_err(anyhow_of)?;
        root.present().map_err(anyhow_of)?;
    }
    Ok(svg)
}

fn anyhow_of<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotters: {e:?}")
}

/// `svg` with `role="img"`, a class for the stylesheet and a `<title>`
/// (escaped) that labels it.
fn titled(svg: &str, id: &str, title: &str) -> String {
    let mut t = String::new();
    let _ = write!(maud::Escaper::new(&mut t), "{title}");
    let mut i = String::new();
    let _ = write!(maud::Escaper::new(&mut i), "{id}");
    let body = svg.strip_prefix("<svg ").unwrap_or(svg);
    let (open, rest) = body.split_once('>').unwrap_or((body, ""));
    format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"{i}\" {open}><title id=\"{i}\">{t}</title>{rest}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_labelled_escaped_and_free_of_style_attributes() {
        let labels = vec!["a".to_owned(), "b".to_owned()];
        let m = StackedBars {
            id: "c1",
            title: "Cost <script>",
            labels: &labels,
            series: vec![Series {
                name: "<b>x</b>".into(),
                values: vec![1.0, 2.0],
            }],
            price_missing: &[false, true],
        }
        .render()
        .into_string();
        assert!(
            m.contains("<title id=\"c1\">Cost &lt;script&gt;</title>"),
            "{m}"
        );
        assert!(m.contains("role=\"img\""));
        assert!(m.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!m.contains("<script"));
        assert!(!m.contains("style="));
        assert!(m.matches("<rect").count() >= 2);
    }

    #[test]
    fn small_series_fold_into_other() {
        let series: Vec<Series> = (0..12)
            .map(|i| Series {
                name: format!("g{i}"),
                values: vec![f64::from(i)],
            })
            .collect();
        let folded = fold_small(series, 1);
        assert_eq!(folded.len(), MAX_SERIES + 1);
        assert_eq!(folded[0].name, "g11");
        assert_eq!(folded[MAX_SERIES].values, vec![0.0 + 1.0 + 2.0]);
    }
}
