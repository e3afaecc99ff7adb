package dev.midtrain.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The validation split of one source by whole documents: which spans of the source's token stream are held out,
 * and the two streams the loader packs into sequences, the held-out documents back to back ({@link #valid()}) and
 * everything else back to back ({@link #train()}). No training sequence holds a token of a held-out document.
 *
 * <p><b>Documents.</b> A document is a maximal run of tokens ending with the end-of-text id (the stream's last
 * document may lack it). A stream without an end-of-text id ({@link TokenStream#eosId()} &lt; 0: in-memory test
 * streams) has no document boundaries; each aligned sequence of L tokens then counts as one document, which makes
 * the split the evenly spaced sequence split of earlier versions.
 *
 * <p><b>Which documents.</b> With S = floor(tokens / L) sequences the target is V = max(1, floor(fraction x S))
 * sequences' worth of tokens, V x L. Probes are stream positions in rounds: round r has M = V x 2^r probes at
 * floor((2k+1) x S x L / (2M)), k = 0..M-1, visited in bit-reversed order of k (so any prefix of a round is spread
 * over the whole stream); the document under each probe is held out, until the held-out tokens reach the target.
 * The choice depends on the data and the fraction only (not the seed). Documents longer than L push the held-out
 * share above the fraction by at most one document; sources of very few documents may hold out much more (the loader
 * prints the counts). Scanning for document boundaries reads only the held-out documents (and their neighbours'
 * end-of-text tokens).
 */
public final class HeldOutDocuments {
    private static final int SCAN_CHUNK = 4096;

    private final TokenStream source;
    private final long[] spanStart, spanEnd;   // held-out [start, end), ascending, disjoint, non-adjacent
    private final long documents;              // held-out documents
    private final long heldTokens;

    private HeldOutDocuments(TokenStream source, long[] spanStart, long[] spanEnd, long documents) {
        this.source = source;
        this.spanStart = spanStart;
        this.spanEnd = spanEnd;
        this.documents = documents;
        long h = 0;
        for (int i = 0; i < spanStart.length; i++) h += spanEnd[i] - spanStart[i];
        this.heldTokens = h;
    }

    /** Holds out whole documents of {@code s} worth about {@code fraction} of its sequences of {@code rowLen} tokens. */
    public static HeldOutDocuments of(TokenStream s, double fraction, int rowLen) {
        long N = s.tokens(), S = N / rowLen;
        long V = fraction > 0 ? Math.max(1, (long) Math.floor(fraction * S)) : 0;
        TreeMap<Long, Long> spans = new TreeMap<>();   // start -> end, documents held out (adjacent ones not merged)
        long held = 0, target = V * rowLen, grid = S * rowLen;
        int eos = s.eosId();
        for (long M = V; held < target && grid > 0; M *= 2) {
            int bits = 64 - Long.numberOfLeadingZeros(Math.max(1, M - 1));
            for (long rev = 0; rev < (1L << bits) && held < target; rev++) {
                long k = Long.reverse(rev) >>> (64 - bits);
                if (bits == 0) k = 0;
                if (k >= M) continue;
                long pos = (long) ((2.0 * k + 1) * grid / (2.0 * M));
                pos = Math.min(pos, N - 1);
                Map.Entry<Long, Long> at = spans.floorEntry(pos);
                if (at != null && pos < at.getValue()) continue;        // already held out
                long[] doc = eos < 0 ? new long[]{pos / rowLen * rowLen, Math.min(N, pos / rowLen * rowLen + rowLen)} : document(s, eos, pos);
                spans.put(doc[0], doc[1]);
                held += doc[1] - doc[0];
            }
            if (M > 2 * N) break;                                         // every position probed
        }
        List<long[]> merged = new ArrayList<>();
        for (var e : spans.entrySet()) {
            long[] last = merged.isEmpty() ? null : merged.get(merged.size() - 1);
            if (last != null && last[1] == e.getKey()) last[1] = e.getValue();
            else merged.add(new long[]{e.getKey(), e.getValue()});
        }
        long[] a = new long[merged.size()], b = new long[merged.size()];
        for (int i = 0; i < a.length; i++) { a[i] = merged.get(i)[0]; b[i] = merged.get(i)[1]; }
        return new HeldOutDocuments(s, a, b, spans.size());
    }

    /** [start, end) of the document holding position {@code pos}: after the previous end-of-text, through the next. */
    static long[] document(TokenStream s, int eos, long pos) {
        long N = s.tokens();
        int[] buf = new int[SCAN_CHUNK];
        long start = 0;
        back:
        for (long hi = pos; hi > 0; ) {                                  // scan [lo, hi) backwards for an end-of-text
            long lo = Math.max(0, hi - SCAN_CHUNK);
            s.read(lo, buf, 0, (int) (hi - lo));
            for (int i = (int) (hi - lo) - 1; i >= 0; i--)
                if (buf[i] == eos) { start = lo + i + 1; break back; }
            hi = lo;
        }
        long end = N;
        fwd:
        for (long lo = pos; lo < N; ) {
            int n = (int) Math.min(SCAN_CHUNK, N - lo);
            s.read(lo, buf, 0, n);
            for (int i = 0; i < n; i++)
                if (buf[i] == eos) { end = lo + i + 1; break fwd; }
            lo += n;
        }
        return new long[]{start, end};
    }

    /** The held-out documents back to back, in stream order. */
    public TokenStream valid() { return new Spliced(source, spanStart.clone(), spanEnd.clone()); }

    /** The stream without the held-out documents. */
    public TokenStream train() {
        if (spanStart.length == 0) return source;
        List<long[]> keep = new ArrayList<>();
        long at = 0;
        for (int i = 0; i < spanStart.length; i++) {
            if (spanStart[i] > at) keep.add(new long[]{at, spanStart[i]});
            at = spanEnd[i];
        }
        if (at < source.tokens()) keep.add(new long[]{at, source.tokens()});
        long[] a = new long[keep.size()], b = new long[keep.size()];
        for (int i = 0; i < a.length; i++) { a[i] = keep.get(i)[0]; b[i] = keep.get(i)[1]; }
        return new Spliced(source, a, b);
    }

    /** Held-out spans [start, end) in the source stream (each one or more whole documents), ascending. */
    public long[][] spans() {
        long[][] out = new long[spanStart.length][];
        for (int i = 0; i < out.length; i++) out[i] = new long[]{spanStart[i], spanEnd[i]};
        return out;
    }

    public long documents() { return documents; }

    public long heldTokens() { return heldTokens; }

    /** Segments [start_i, end_i) of a base stream read as one stream. */
    private static final class Spliced implements TokenStream {
        private final TokenStream base;
        private final long[] start, end, offset;   // offset[i]: position of segment i in this stream; offset[n] = length

        Spliced(TokenStream base, long[] start, long[] end) {
            this.base = base;
            this.start = start;
            this.end = end;
            offset = new long[start.length + 1];
            for (int i = 0; i < start.length; i++) offset[i + 1] = offset[i] + end[i] - start[i];
        }

        @Override public String name() { return base.name(); }
        @Override public long tokens() { return offset[start.length]; }
        @Override public int eosId() { return base.eosId(); }
        @Override public void checkVocab(int vocabSize) { base.checkVocab(vocabSize); }
        @Override public String where(long pos) { return base.where(toBase(pos)); }

        private int segment(long pos) {
            int lo = 0, hi = start.length - 1;
            while (lo < hi) {
                int mid = (lo + hi + 1) >>> 1;
                if (offset[mid] <= pos) lo = mid;
                else hi = mid - 1;
            }
            return lo;
        }

        private long toBase(long pos) {
            if (pos < 0 || pos >= tokens()) return pos;
            int i = segment(pos);
            return start[i] + pos - offset[i];
        }

        @Override
        public void read(long pos, int[] dst, int off, int len) {
            if (pos < 0 || len < 0 || pos + len > tokens()) throw new IndexOutOfBoundsException(pos + "+" + len + " > " + tokens());
            int i = segment(pos);
            while (len > 0) {
                int n = (int) Math.min(len, offset[i + 1] - pos);
                base.read(start[i] + pos - offset[i], dst, off, n);
                pos += n;
                off += n;
                len -= n;
                i++;
            }
        }
    }
}
