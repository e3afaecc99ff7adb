package dev.midtrain.config;

/** Validation helper for config records: a failed check names the field (its YAML path) and what was wrong. */
public final class Check {
    private Check() {}

    public static void require(boolean ok, String field, String message) {
        if (!ok) throw new ConfigException(field, message);
    }

    /** A config field is invalid; {@link #field()} is its dotted YAML path. */
    public static final class ConfigException extends IllegalArgumentException {
        private final String field;

        public ConfigException(String field, String message) {
            super(field + ": " + message);
            this.field = field;
        }

        public String field() { return field; }
    }
}
