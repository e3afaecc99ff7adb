package dev.midtrain.serve;

/**
 * A request the server refuses, answered as OpenAI-style JSON {@code {"error": {"message", "type", "param", "code"}}}
 * with an HTTP status: 400 malformed or invalid, 404 unknown path, 405 wrong method, 413 too large, 429 queue full,
 * 503 shutting down, 500 an engine failure.
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String param;
    final String code;              // OpenAI's error code string ("model_not_found"); null: the HTTP status is the code

    ApiError(int status, String type, String param, String message) {
        this(status, type, param, message, null);
    }

    ApiError(int status, String type, String param, String message, String code) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** OpenAI's answer to an unknown model: 404, invalid_request_error, code model_not_found. */
    static ApiError unknownModel(String name, String served) {
        return new ApiError(404, "invalid_request_error", "model", "The model `" + name + "` does not exist (this server serves `"
                + served + "`; GET /v1/models)", "model_not_found");
    }

    static ApiError badRequest(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, message);
    }
}
