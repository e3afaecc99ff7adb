package dev.midtrain.kernels;

/**
 * Naive double-precision references of every kernel in native/include/midtrain_kernels.h, written from the formulas
 * in the header and independent of the C code: plain loops, exact softmax over the full score row (no online
 * rescaling), no shared helpers with the kernels. Inputs are the fp32 values given to the kernel, widened to double.
 */
final class Ref {
    private Ref() {}

    // ------------------------------------------------------------------------------------------- embedding

    /** out[N,C] = wte[tokens[n], :]. */
    static double[] embeddingForward(int[] tokens, float[] wte, int C) {
        int N = tokens.length;
        double[] out = new double[N * C];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) out[n * C + c] = wte[tokens[n] * C + c];
        return out;
    }

    /** dwte (initial values dwte0) += scatter of dout rows by token. */
    static double[] embeddingBackward(float[] dwte0, int[] tokens, float[] dout, int C) {
        double[] d = toDouble(dwte0);
        for (int n = 0; n < tokens.length; n++)
            for (int c = 0; c < C; c++) d[tokens[n] * C + c] += dout[n * C + c];
        return d;
    }

    // --------------------------------------------------------------------------------------------- RMSNorm

    /** Returns {out[N,C], rstd[N]}. */
    static double[][] rmsnormForward(float[] x, float[] w, int N, int C, float eps) {
        double[] out = new double[N * C], rstd = new double[N];
        for (int n = 0; n < N; n++) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double) x[n * C + c] * x[n * C + c];
            double r = 1.0 / Math.sqrt(ss / C + eps);
            rstd[n] = r;
            for (int c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
        }
        return new double[][] {out, rstd};
    }

    /** Returns {dinp increment [N,C], dweight increment [C]}: the exact gradient of sum(dout * out) (rstd recomputed). */
    static double[][] rmsnormBackward(float[] dout, float[] x, float[] w, int N, int C, float eps) {
        double[] dx = new double[N * C], dw = new double[C];
        for (int n = 0; n < N; n++) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double) x[n * C + c] * x[n * C + c];
            double r = 1.0 / Math.sqrt(ss / C + eps);
            // out_c = x_c w_c r;  dr/dx_j = -r^3 x_j / C
            double dot = 0;
            for (int c = 0; c < C; c++) dot += (double) dout[n * C + c] * w[c] * x[n * C + c];
            for (int j = 0; j < C; j++) {
                dx[n * C + j] = (double) dout[n * C + j] * w[j] * r - dot * r * r * r * x[n * C + j] / C;
                dw[j] += (double) dout[n * C + j] * x[n * C + j] * r;
            }
        }
        return new double[][] {dx, dw};
    }

    // ------------------------------------------------------------------------------------------------ RoPE

    /** Rotate-half RoPE by +angle (sign 1) or -angle (sign -1) on q and k heads; v heads copied. */
    static double[] rope(float[] x, float[] cos, float[] sin, int B, int T, int NH, int NKV, int HD, int sign) {
        int H = NH + 2 * NKV, half = HD / 2;
        double[] out = toDouble(x);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < NH + NKV; h++) {
                    int base = ((b * T + t) * H + h) * HD;
                    for (int i = 0; i < half; i++) {
                        double c = cos[t * half + i], s = sign * (double) sin[t * half + i];
                        double x1 = x[base + i], x2 = x[base + i + half];
                        out[base + i] = x1 * c - x2 * s;
                        out[base + i + half] = x2 * c + x1 * s;
                    }
                }
        return out;
    }

    // ------------------------------------------------------------------------------------------- attention

    private static int qIdx(int b, int t, int h, int T, int H, int HD) { return ((b * T + t) * H + h) * HD; }

    /** Full causal softmax probabilities P[b][h][t][s] (s <= t), computed in double from scratch. */
    private static double[][][][] probs(float[] qkv, int B, int T, int NH, int NKV, int HD) {
        int H = NH + 2 * NKV, group = NH / NKV;
        double scale = 1.0 / Math.sqrt(HD);
        double[][][][] P = new double[B][NH][T][];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    double[] sc = new double[t + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int s = 0; s <= t; s++) {
                        double d = 0;
                        int qi = qIdx(b, t, h, T, H, HD), ki = qIdx(b, s, NH + h / group, T, H, HD);
                        for (int i = 0; i < HD; i++) d += (double) qkv[qi + i] * qkv[ki + i];
                        sc[s] = d * scale;
                        max = Math.max(max, sc[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++) sum += Math.exp(sc[s] - max);
                    for (int s = 0; s <= t; s++) sc[s] = Math.exp(sc[s] - max) / sum;
                    P[b][h][t] = sc;
                }
        return P;
    }

    /** Returns {out[B,T,NH,HD], lse[B,NH,T]}. */
    static double[][] attentionForward(float[] qkv, int B, int T, int NH, int NKV, int HD) {
        int H = NH + 2 * NKV, group = NH / NKV;
        double scale = 1.0 / Math.sqrt(HD);
        double[] out = new double[B * T * NH * HD], lse = new double[B * NH * T];
        double[][][][] P = probs(qkv, B, T, NH, NKV, HD);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    double sum = 0, max = Double.NEGATIVE_INFINITY;
                    double[] sc = new double[t + 1];
                    for (int s = 0; s <= t; s++) {
                        double d = 0;
                        int qi = qIdx(b, t, h, T, H, HD), ki = qIdx(b, s, NH + h / group, T, H, HD);
                        for (int i = 0; i < HD; i++) d += (double) qkv[qi + i] * qkv[ki + i];
                        sc[s] = d * scale;
                        max = Math.max(max, sc[s]);
                    }
                    for (int s = 0; s <= t; s++) sum += Math.exp(sc[s] - max);
                    lse[(b * NH + h) * T + t] = max + Math.log(sum);
                    for (int s = 0; s <= t; s++) {
                        int vi = qIdx(b, s, NH + NKV + h / group, T, H, HD);
                        for (int i = 0; i < HD; i++) out[((b * T + t) * NH + h) * HD + i] += P[b][h][t][s] * qkv[vi + i];
                    }
                }
        return new double[][] {out, lse};
    }

    /** dqkv[B,T,NH+2*NKV,HD]: the exact gradient of sum(dout * attention(qkv)), from the full probabilities. */
    static double[] attentionBackward(float[] dout, float[] qkv, int B, int T, int NH, int NKV, int HD) {
        int H = NH + 2 * NKV, group = NH / NKV;
        double scale = 1.0 / Math.sqrt(HD);
        double[][][][] P = probs(qkv, B, T, NH, NKV, HD);
        double[] d = new double[qkv.length];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    int oi = ((b * T + t) * NH + h) * HD, qi = qIdx(b, t, h, T, H, HD);
                    double[] p = P[b][h][t];
                    // dP[s] = dout . v_s ;  dS[s] = p_s (dP[s] - sum_r p_r dP[r])
                    double[] dP = new double[t + 1];
                    double pdp = 0;
                    for (int s = 0; s <= t; s++) {
                        int vi = qIdx(b, s, NH + NKV + h / group, T, H, HD);
                        for (int i = 0; i < HD; i++) dP[s] += (double) dout[oi + i] * qkv[vi + i];
                        pdp += p[s] * dP[s];
                    }
                    for (int s = 0; s <= t; s++) {
                        double dS = p[s] * (dP[s] - pdp);
                        int ki = qIdx(b, s, NH + h / group, T, H, HD), vi = qIdx(b, s, NH + NKV + h / group, T, H, HD);
                        for (int i = 0; i < HD; i++) {
                            d[qi + i] += dS * scale * qkv[ki + i];
                            d[ki + i] += dS * scale * qkv[qi + i];
                            d[vi + i] += p[s] * dout[oi + i];
                        }
                    }
                }
        return d;
    }

    // ---------------------------------------------------------------------------------------------- SwiGLU

    static double silu(double x) { return x / (1 + Math.exp(-x)); }

    static double[] swigluForward(float[] gateup, int N, int F) {
        double[] out = new double[N * F];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < F; i++) out[n * F + i] = silu(gateup[n * 2 * F + i]) * gateup[n * 2 * F + F + i];
        return out;
    }

    static double[] swigluBackward(float[] dout, float[] gateup, int N, int F) {
        double[] d = new double[N * 2 * F];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < F; i++) {
                double g = gateup[n * 2 * F + i], u = gateup[n * 2 * F + F + i];
                double sig = 1 / (1 + Math.exp(-g));
                double dsilu = sig + g * sig * (1 - sig);
                d[n * 2 * F + i] = dout[n * F + i] * u * dsilu;
                d[n * 2 * F + F + i] = dout[n * F + i] * g * sig;
            }
        return d;
    }

    // ------------------------------------------------------------------------------------ cross-entropy

    /** Returns {lse[N], targetLogit[N]} over the shard [vocabStart, vocabStart+V). */
    static double[][] crossentropyForward(float[] logits, int[] targets, int N, int V, int vocabStart, int ignoreIndex) {
        double[] lse = new double[N], tl = new double[N];
        for (int n = 0; n < N; n++) {
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int j = 0; j < V; j++) max = Math.max(max, logits[n * V + j]);
            for (int j = 0; j < V; j++) sum += Math.exp(logits[n * V + j] - max);
            lse[n] = max + Math.log(sum);
            int j = targets[n] - vocabStart;
            tl[n] = targets[n] != ignoreIndex && j >= 0 && j < V ? logits[n * V + j] : 0;
        }
        return new double[][] {lse, tl};
    }

    /** Returns {losses[N], dlogits[N,V]} given the (possibly combined) lse and summed target logits. */
    static double[][] crossentropyBackward(float[] logits, double[] lse, double[] tl, int[] targets, double dloss,
                                           int N, int V, int vocabStart, int ignoreIndex) {
        double[] losses = new double[N], d = new double[N * V];
        for (int n = 0; n < N; n++) {
            if (targets[n] == ignoreIndex) continue;
            losses[n] = lse[n] - tl[n];
            for (int j = 0; j < V; j++)
                d[n * V + j] = (Math.exp(logits[n * V + j] - lse[n]) - (j + vocabStart == targets[n] ? 1 : 0)) * dloss;
        }
        return new double[][] {losses, d};
    }

    static double[] lseCombine(float[] parts, int P, int N) {
        double[] out = new double[N];
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int p = 0; p < P; p++) s += Math.exp(parts[p * N + n]);
            out[n] = Math.log(s);
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------- AdamW

    /** One torch.optim.AdamW step in double; updates p, m, v in place. */
    static void adamw(double[] p, double[] m, double[] v, float[] grad, double lr, double b1, double b2, double eps,
                      double wd, int step, double gradScale) {
        double bc1 = 1 - Math.pow(b1, step), bc2 = 1 - Math.pow(b2, step);
        for (int i = 0; i < p.length; i++) {
            double g = grad[i] * gradScale;
            p[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            p[i] -= lr / bc1 * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
        }
    }

    // -------------------------------------------------------------------------------------------- helpers

    static double sumSquares(float[] x) {
        double s = 0;
        for (float f : x) s += (double) f * f;
        return s;
    }

    static double[] toDouble(float[] x) {
        double[] d = new double[x.length];
        for (int i = 0; i < x.length; i++) d[i] = x[i];
        return d;
    }
}
