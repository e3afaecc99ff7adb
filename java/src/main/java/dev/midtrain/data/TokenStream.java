package dev.midtrain.data;

import dev.midtrain.common.UserError;

/** A source's token stream as the loader sees it: random-access int32 ids (documents concatenated). */
public interface TokenStream {
    String name();

    long tokens();

    /** Copies tokens [pos, pos + len) into dst[off, off + len). Thread-safe. */
    void read(long pos, int[] dst, int off, int len);

    /** Refuses ids outside [0, vocabSize) with a {@link UserError} naming the source (and file). */
    void checkVocab(int vocabSize);

    /**
     * The end-of-text id that ends every document of this stream, or -1 when the stream has no document boundaries
     * (in-memory test streams): the validation split holds out whole documents ({@link HeldOutDocuments}).
     */
    default int eosId() { return -1; }

    /** Where stream position {@code pos} lives, for error messages (e.g. the shard file and index in it). */
    default String where(long pos) { return "source " + name() + ", token " + pos; }

    /** An in-memory stream without document boundaries (tests, benchmarks). */
    static TokenStream of(String name, int[] tokens) { return of(name, tokens, -1); }

    /** An in-memory stream whose documents end with {@code eosId} (-1: no document boundaries). */
    static TokenStream of(String name, int[] tokens, int eosId) {
        return new TokenStream() {
            @Override public String name() { return name; }
            @Override public int eosId() { return eosId; }
            @Override public long tokens() { return tokens.length; }
            @Override public void read(long pos, int[] dst, int off, int len) { System.arraycopy(tokens, Math.toIntExact(pos), dst, off, len); }
            @Override public void checkVocab(int vocabSize) {
                for (int i = 0; i < tokens.length; i++)
                    if (tokens[i] < 0 || tokens[i] >= vocabSize)
                        throw new UserError("data source " + name + ": token " + i + " has id " + tokens[i] + " outside the model vocab [0, " + vocabSize + ")");
            }
        };
    }
}
