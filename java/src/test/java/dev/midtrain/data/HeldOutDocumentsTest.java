package dev.midtrain.data;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The validation split holds out whole documents. Streams are built so that every token names its document:
 * document d of source s is (length - 1) copies of the id 1 + s * 100_000 + d followed by end-of-text 0, so a row's
 * documents can be read off its tokens.
 */
class HeldOutDocumentsTest {
    static final int EOS = 0;

    /** Documents of random lengths in [1, maxLen] (end-of-text included); returns the stream, fills {@code lengths}. */
    static int[] documents(int s, int docs, int maxLen, long seed, List<Integer> lengths) {
        SplittableRandom r = new SplittableRandom(seed);
        List<Integer> toks = new ArrayList<>();
        for (int d = 0; d < docs; d++) {
            int len = 1 + r.nextInt(maxLen);
            lengths.add(len);
            for (int i = 0; i < len - 1; i++) toks.add(1 + s * 100_000 + d);
            toks.add(EOS);
        }
        return toks.stream().mapToInt(Integer::intValue).toArray();
    }

    static Set<Integer> docsOf(int[] batch) {
        Set<Integer> out = new HashSet<>();
        for (int t : batch) if (t != EOS) out.add(t);
        return out;
    }

    @Test
    void noValidationDocumentIsTrainedOnForShortAndLongDocumentsAndSeveralSources() {
        int T = 31, L = T + 1;
        for (int maxLen : new int[]{10, 3 * L, 20 * L}) {                 // documents shorter than, around and far above a sequence
            List<Integer> len0 = new ArrayList<>(), len1 = new ArrayList<>();
            int[] a = documents(0, maxLen > L ? 300 : 3000, maxLen, 11 + maxLen, len0);
            int[] b = documents(1, maxLen > L ? 200 : 2000, maxLen, 12 + maxLen, len1);
            List<TokenStream> srcs = List.of(TokenStream.of("a", a, EOS), TokenStream.of("b", b, EOS));
            BlendedLoader ld = BlendedLoader.of(srcs, new double[]{1, 1}, 0.05, T, 4, 8, 7, 0, 1);
            Set<Integer> valid = new HashSet<>();
            List<int[]> vb = ld.validationMicroBatches(Integer.MAX_VALUE);
            assertFalse(vb.isEmpty());
            for (int[] v : vb) valid.addAll(docsOf(v));
            Set<Integer> trained = new HashSet<>();
            int[] mb = new int[4 * L];
            long rows = (a.length + b.length) / L * 2;                    // about two epochs of both sources
            for (long i = 0; i < rows / 4; i++) {
                ld.nextMicroBatch(mb);
                trained.addAll(docsOf(mb));
            }
            Set<Integer> shared = new HashSet<>(valid);
            shared.retainAll(trained);
            assertEquals(Set.of(), shared, "maxLen " + maxLen + ": validation documents seen in training");
            // the held-out spans are exactly the documents that never reach training, and they are whole documents
            for (int s = 0; s < 2; s++) {
                int[] all = s == 0 ? a : b;
                long held = 0;
                for (long[] sp : ld.heldOutSpans(s)) {
                    assertTrue(sp[0] == 0 || all[(int) sp[0] - 1] == EOS, "span starts inside a document");
                    assertEquals(EOS, all[(int) sp[1] - 1], "span ends inside a document");
                    held += sp[1] - sp[0];
                    for (long p = sp[0]; p < sp[1]; p++) if (all[(int) p] != EOS) assertFalse(trained.contains(all[(int) p]));
                }
                // the held-out share: at least the fraction's sequences, at most one more document (sample of 5%)
                long target = (long) Math.floor(0.05 * (all.length / L)) * L;
                int longest = (s == 0 ? len0 : len1).stream().mapToInt(Integer::intValue).max().orElseThrow();
                assertTrue(held >= target && held < target + longest, "held " + held + ", target " + target + ", longest doc " + longest);
            }
        }
    }

    @Test
    void theOldSequenceSplitSharedDocumentsWithTrainingAndTheNewOneDoesNot() {
        // The split of earlier versions (every 20th sequence of 32 tokens) on documents of up to 100 tokens: count the
        // held-out sequences that share a document with a training sequence (the issue measured 345 of 345).
        int L = 32;
        int[] a = documents(0, 2000, 100, 3, new ArrayList<>());
        long S = a.length / L, V = (long) Math.floor(0.05 * S), sharedOld = 0;
        Set<Long> heldSeq = new HashSet<>();
        for (long k = 0; k < V; k++) heldSeq.add((2 * k + 1) * S / (2 * V));
        Set<Integer> trainDocs = new HashSet<>();
        for (long j = 0; j < S; j++) if (!heldSeq.contains(j)) for (int i = 0; i < L; i++) if (a[(int) (j * L + i)] != EOS) trainDocs.add(a[(int) (j * L + i)]);
        for (long j : heldSeq) {
            boolean shares = false;
            for (int i = 0; i < L; i++) shares |= trainDocs.contains(a[(int) (j * L + i)]);
            if (shares) sharedOld++;
        }
        assertTrue(sharedOld > V / 2, "the old split: " + sharedOld + " of " + V);
        HeldOutDocuments h = HeldOutDocuments.of(TokenStream.of("a", a, EOS), 0.05, L);
        int[] tr = new int[(int) h.train().tokens()], va = new int[(int) h.valid().tokens()];
        h.train().read(0, tr, 0, tr.length);
        h.valid().read(0, va, 0, va.length);
        Set<Integer> sharedNew = docsOf(tr);
        sharedNew.retainAll(docsOf(va));
        assertEquals(Set.of(), sharedNew);
        assertEquals(a.length, tr.length + va.length, "the two streams partition the source");
        assertEquals(h.documents(), docsOf(va).size() + countEmptyDocs(va), "held-out documents");
    }

    private static int countEmptyDocs(int[] s) {          // documents of length 1 (only the end-of-text) carry no id
        int n = 0;
        for (int i = 0; i < s.length; i++) if (s[i] == EOS && (i == 0 || s[i - 1] == EOS)) n++;
        return n;
    }

    @Test
    void withoutDocumentBoundariesEachSequenceIsADocument() {
        int L = 10;
        int[] t = new int[1000 + 3];
        for (int i = 0; i < t.length; i++) t[i] = i;
        HeldOutDocuments h = HeldOutDocuments.of(TokenStream.of("x", t), 0.1, L);
        long[][] spans = h.spans();
        assertEquals(10, spans.length);
        for (int k = 0; k < 10; k++) assertArrayEquals(new long[]{(10L * k + 5) * L, (10L * k + 6) * L}, spans[k]);
        assertEquals(0, HeldOutDocuments.of(TokenStream.of("x", t), 0.0, L).spans().length);
    }

    @Test
    void aSourceThatIsOneDocumentCannotHoldOneOut() {
        int[] one = new int[500];
        one[499] = EOS;
        java.util.Arrays.fill(one, 0, 499, 5);
        var e = assertThrows(dev.midtrain.common.UserError.class,
                () -> BlendedLoader.of(List.of(TokenStream.of("solo", one, EOS)), new double[]{1}, 0.05, 15, 2, 2, 1, 0, 1));
        assertTrue(e.getMessage().startsWith("data source solo: holding out whole documents"), e.getMessage());
        assertTrue(e.getMessage().contains("1 document(s)"), e.getMessage());
    }
}
