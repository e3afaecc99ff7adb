package dev.midtrain.recipe;

import java.util.Locale;
import java.util.Map;

/** Line charts as standalone SVG (no script, no font files): the report's curves, inline in HTML and as files beside the Markdown. */
final class Svg {
    private Svg() {}

    static final String[] PALETTE = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    private static final int W = 460, H = 260, L = 56, R = 12, T = 28, B = 36;

    /** One polyline per series (x = step); an empty map draws an empty frame saying so. */
    static String lineChart(String title, Map<String, double[][]> series) {
        double x0 = Double.POSITIVE_INFINITY, x1 = Double.NEGATIVE_INFINITY, y0 = Double.POSITIVE_INFINITY, y1 = Double.NEGATIVE_INFINITY;
        for (double[][] pts : series.values())
            for (double[] p : pts) { x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]); }
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">", W, H, W, H));
        s.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"16\" font-size=\"13\">%s</text>", L, Report.esc(title)));
        s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>", L, T, W - L - R, H - T - B));
        if (!Double.isFinite(x0)) {
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" fill=\"#888\">no data</text></svg>", L + 10, T + 20));
            return s.toString();
        }
        if (x1 == x0) x1 = x0 + 1;
        if (y1 == y0) { y1 += Math.max(1e-9, Math.abs(y0) * 0.05); y0 -= Math.max(1e-9, Math.abs(y0) * 0.05); }
        double pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
        for (int i = 0; i <= 4; i++) {                                          // y ticks and grid
            double v = y0 + (y1 - y0) * i / 4;
            double py = sy(v, y0, y1);
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", L, W - R, py, py));
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>", L - 4, py + 4, tick(v)));
        }
        for (int i = 0; i <= 4; i++) {                                          // x ticks
            double v = x0 + (x1 - x0) * i / 4;
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", sx(v, x0, x1), H - B + 14, tick(Math.round(v))));
        }
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>", (L + W - R) / 2, H - 6));
        int k = 0;
        for (var e : series.entrySet()) {
            String colour = PALETTE[k % PALETTE.length];
            StringBuilder pts = new StringBuilder();
            for (double[] p : e.getValue()) pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", sx(p[0], x0, x1), sy(p[1], y0, y1)));
            if (e.getValue().length == 1) {
                double[] p = e.getValue()[0];
                s.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", sx(p[0], x0, x1), sy(p[1], y0, y1), colour));
            } else s.append("<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"").append(colour).append("\" points=\"").append(pts.toString().strip()).append("\"/>");
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>", W - R - 150, T + 14 + 13 * k, colour, Report.esc(e.getKey())));
            k++;
        }
        return s.append("</svg>").toString();
    }

    private static double sx(double x, double x0, double x1) { return L + (x - x0) / (x1 - x0) * (W - L - R); }

    private static double sy(double y, double y0, double y1) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); }

    private static String tick(double v) {
        double a = Math.abs(v);
        if (a != 0 && (a < 1e-3 || a >= 1e5)) return String.format(Locale.ROOT, "%.1e", v);
        if (a >= 100 || v == Math.rint(v)) return String.format(Locale.ROOT, "%.0f", v);
        return String.format(Locale.ROOT, a >= 1 ? "%.2f" : "%.3f", v);
    }
}
