package dev.midtrain.eval;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * PNG heatmap of an {@link EvalReport} (Java2D, headless): disciplines x difficulty tiers, each cell coloured by
 * accuracy (red 0% .. white 50% .. green 100%) and labelled "acc% (n)", with an "all" row and column. With a second
 * report: three panels, A, B and the delta A - B (blue gain, red loss, +-30 points saturated). Written atomically.
 */
public final class Heatmap {
    private Heatmap() {}

    private static final int CW = 96, CH = 34, LEFT = 150, TOP = 70, GAP = 40;

    public static void write(Path png, EvalReport a, EvalReport b) throws IOException {
        System.setProperty("java.awt.headless", "true");
        List<String> tiers = b == null ? a.tiers() : EvalReport.union(a.tiers(), b.tiers());
        List<String> rows = b == null ? a.subjects() : EvalReport.union(a.subjects(), b.subjects());
        tiers.add(EvalReport.ALL);
        rows.add(EvalReport.ALL);
        int panels = b == null ? 1 : 3;
        int pw = LEFT + CW * tiers.size(), w = panels * pw + (panels - 1) * GAP + 20, h = TOP + CH * rows.size() + 40;
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, w, h);
        panel(g, 0, "A: " + short_(a.model()) + String.format(Locale.ROOT, " (%d-shot, acc %.1f%%)", a.shots(), 100 * a.microAcc()), rows, tiers, a, null);
        if (b != null) {
            panel(g, pw + GAP, "B: " + short_(b.model()) + String.format(Locale.ROOT, " (%d-shot, acc %.1f%%)", b.shots(), 100 * b.microAcc()), rows, tiers, b, null);
            panel(g, 2 * (pw + GAP), String.format(Locale.ROOT, "A - B (points; micro %+.1f)", 100 * (a.microAcc() - b.microAcc())), rows, tiers, a, b);
        }
        g.dispose();
        Path tmp = png.resolveSibling(png.getFileName() + ".tmp");
        if (png.getParent() != null) Files.createDirectories(png.getParent());
        ImageIO.write(img, "png", tmp.toFile());
        Files.move(tmp, png, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    private static String short_(String model) {
        return model.length() <= 48 ? model : "..." + model.substring(model.length() - 45);
    }

    /** One grid; with {@code minus} != null the cells show r - minus. */
    private static void panel(Graphics2D g, int x0, String title, List<String> rows, List<String> tiers, EvalReport r, EvalReport minus) {
        g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 13));
        g.setColor(Color.BLACK);
        g.drawString(title, x0 + 10, 24);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        FontMetrics fm = g.getFontMetrics();
        for (int j = 0; j < tiers.size(); j++) {
            String t = tiers.get(j);
            g.drawString(t, x0 + LEFT + j * CW + (CW - fm.stringWidth(t)) / 2, TOP - 10);
        }
        for (int i = 0; i < rows.size(); i++) {
            String s = rows.get(i);
            g.setColor(Color.BLACK);
            g.drawString(s.length() > 20 ? s.substring(0, 20) : s, x0 + 10, TOP + i * CH + CH / 2 + 5);
            for (int j = 0; j < tiers.size(); j++) {
                EvalReport.Cell c = r.cell(s, tiers.get(j));
                int cx = x0 + LEFT + j * CW, cy = TOP + i * CH;
                String label;
                Color fill;
                if (minus == null) {
                    fill = c.items() == 0 ? new Color(235, 235, 235) : accColor(c.acc());
                    label = c.items() == 0 ? "" : String.format(Locale.ROOT, "%.0f%% (%d)", 100 * c.acc(), c.items());
                } else {
                    EvalReport.Cell m = minus.cell(s, tiers.get(j));
                    boolean any = c.items() > 0 && m.items() > 0;
                    double d = any ? c.acc() - m.acc() : 0;
                    fill = any ? deltaColor(d) : new Color(235, 235, 235);
                    label = any ? String.format(Locale.ROOT, "%+.0f", 100 * d) : "";
                }
                g.setColor(fill);
                g.fillRect(cx, cy, CW, CH);
                g.setColor(Color.GRAY);
                g.setStroke(new BasicStroke(1));
                g.drawRect(cx, cy, CW, CH);
                g.setColor(Color.BLACK);
                g.drawString(label, cx + (CW - fm.stringWidth(label)) / 2, cy + CH / 2 + 5);
            }
        }
        g.setColor(Color.DARK_GRAY);
        g.drawString("discipline \\ difficulty", x0 + 10, TOP - 10);
    }

    /** red (0) - white (0.5) - green (1). */
    static Color accColor(double acc) {
        double a = Math.max(0, Math.min(1, acc));
        return a < 0.5 ? mix(new Color(220, 80, 70), Color.WHITE, a / 0.5) : mix(Color.WHITE, new Color(70, 170, 90), (a - 0.5) / 0.5);
    }

    /** red (-0.3) - white (0) - blue (+0.3). */
    static Color deltaColor(double d) {
        double t = Math.max(-1, Math.min(1, d / 0.3));
        return t < 0 ? mix(Color.WHITE, new Color(220, 80, 70), -t) : mix(Color.WHITE, new Color(70, 110, 210), t);
    }

    private static Color mix(Color a, Color b, double t) {
        return new Color((int) Math.round(a.getRed() + (b.getRed() - a.getRed()) * t),
                (int) Math.round(a.getGreen() + (b.getGreen() - a.getGreen()) * t),
                (int) Math.round(a.getBlue() + (b.getBlue() - a.getBlue()) * t));
    }

}
