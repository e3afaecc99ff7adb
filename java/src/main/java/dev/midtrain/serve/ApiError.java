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

    ApiError(int status, String type, String param, String message) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
    }

    static ApiError badRequest(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, message);
    }
}
