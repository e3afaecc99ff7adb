package dev.midtrain.eval;

import java.util.List;

/**
 * One multiple-choice question.
 *
 * @param subject    discipline (the table's rows)
 * @param difficulty tier 1..5 (H1-H5), or 0 when the item has none
 * @param grade      school grade or level, free text, may be empty
 * @param where      file and line (or row) for messages
 */
public record McItem(String question, List<String> choices, int answer, String subject, int difficulty, String grade, String where) {
    public McItem {
        choices = List.copyOf(choices);
        if (choices.size() < 2) throw new IllegalArgumentException(where + ": needs at least 2 choices, has " + choices.size());
        if (answer < 0 || answer >= choices.size()) throw new IllegalArgumentException(where + ": answer index " + answer + " outside the " + choices.size() + " choices");
        if (difficulty < 0 || difficulty > 5) throw new IllegalArgumentException(where + ": difficulty must be H1..H5");
    }

    /** "H1".."H5", or "-" without a tier. */
    public String tier() { return difficulty == 0 ? "-" : "H" + difficulty; }
}
