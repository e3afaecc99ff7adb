package dev.midtrain.serve;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The HTTP/1.1 transport of {@code midtrain serve}: a listener, one thread per open connection, keep-alive, bodies
 * with Content-Length or chunked, responses with Content-Length or chunked (server-sent events). It exists for the
 * limits a server facing slow or hostile clients needs, which the JDK's {@code com.sun.net.httpserver} (Java 17) does
 * not have: a cap on open connections, a deadline for reading each request, an idle timeout between requests, a
 * deadline for each write, and JSON answers to malformed requests (the JDK answers a bad Content-Length with its own
 * HTML page before any handler runs).
 *
 * <p><b>Limits.</b> At most {@code maxConnections} connections are open; one more is answered 503 (JSON, Connection:
 * close) and closed. A connection waits at most {@code idleMs} for the first byte of its next request; from that byte
 * the whole request (line, headers, body) must arrive within {@code readMs}; each response write must complete within
 * {@code writeMs}. A reaper thread closes the socket of any connection past its deadline (a read or write blocked on
 * it then fails), so a client sending half a request holds one thread for at most {@code readMs}, and {@code
 * maxConnections} bounds the threads. Request line and headers are at most 64 KiB; the body at most {@code
 * maxBodyBytes} (413).
 *
 * <p>Malformed requests (request line, header, Content-Length, chunk size, Transfer-Encoding with Content-Length)
 * reach the handler as an {@link Exchange} with {@link Exchange#error} set, so they are answered in the server's
 * JSON error format; the connection is closed after such an answer.
 */
final class Http implements AutoCloseable {
    static final int MAX_HEAD_BYTES = 64 * 1024;
    private static final long REAP_EVERY_MS = 50;

    /** Connection and time limits (milliseconds). */
    record Limits(int maxConnections, long idleMs, long readMs, long writeMs, int maxBodyBytes) {
        Limits {
            if (maxConnections < 1) throw new IllegalArgumentException("--max-connections: must be >= 1, got " + maxConnections);
            if (idleMs < 1 || readMs < 1 || writeMs < 1) throw new IllegalArgumentException("timeouts must be >= 1 ms");
        }
    }

    /** Answers one request; must call {@link Exchange#send} or {@link Exchange#startStream} (else a 500 is sent). */
    interface Handler {
        void handle(Exchange ex) throws IOException;
    }

    /** The error of a malformed request: its status and message (answered by the handler, then the connection closes). */
    record Failure(int status, String message) {}

    private final Limits limits;
    private final Handler handler;
    private final ServerSocket listener;
    private final Thread acceptor, reaper, rejector;
    private final Set<Conn> open = ConcurrentHashMap.newKeySet();
    private final BlockingQueue<Socket> refused = new ArrayBlockingQueue<>(64);
    private final byte[] busyAnswer;
    private volatile boolean closed;

    Http(String host, int port, Limits limits, Handler handler, byte[] busyJson) throws IOException {
        this.limits = limits;
        this.handler = handler;
        this.busyAnswer = response(503, "application/json", busyJson.length, true, Map.of("Retry-After", "1"), busyJson);
        listener = new ServerSocket();
        listener.setReuseAddress(true);
        listener.bind(new InetSocketAddress(InetAddress.getByName(host), port), 256);
        acceptor = daemon(this::acceptLoop, "midtrain-serve-accept");
        reaper = daemon(this::reapLoop, "midtrain-serve-reaper");
        rejector = daemon(this::rejectLoop, "midtrain-serve-busy");
    }

    int port() { return listener.getLocalPort(); }

    /** Connections open now. */
    int openConnections() { return open.size(); }

    /**
     * Stops accepting, closes idle connections at once and gives the ones still answering a request up to a second to
     * finish writing, then closes every connection.
     */
    @Override
    public void close() {
        closed = true;
        try {
            listener.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        for (Conn c : open) if (!c.busy) c.kill();
        long until = System.nanoTime() + 1_000_000_000L;
        while (open.stream().anyMatch(c -> c.busy) && System.nanoTime() < until) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        for (Conn c : open) c.kill();
        acceptor.interrupt();
        reaper.interrupt();
        rejector.interrupt();
    }

    private static Thread daemon(Runnable r, String name) {
        Thread t = new Thread(null, r, name, 256 << 10);
        t.setDaemon(true);
        t.start();
        return t;
    }

    private void acceptLoop() {
        while (!closed) {
            Socket s;
            try {
                s = listener.accept();
            } catch (IOException e) {
                if (closed) return;
                continue;
            }
            if (open.size() >= limits.maxConnections()) {         // the cap: answered 503 by the rejector, never queued
                if (!refused.offer(s)) closeQuietly(s);
                continue;
            }
            try {
                s.setTcpNoDelay(true);
            } catch (IOException ignored) {
                // a socket option; the connection works without it
            }
            Conn c = new Conn(s);
            open.add(c);
            try {
                Thread t = new Thread(null, c, "midtrain-serve-conn", 1 << 20);   // JSON nests up to 1000 deep (Jackson's limit)
                t.setDaemon(true);
                t.start();
            } catch (OutOfMemoryError e) {                         // no thread to be had: refuse like a full server
                open.remove(c);
                if (!refused.offer(s)) closeQuietly(s);
            }
        }
    }

    /** Answers refused connections 503 after draining what they sent (so the answer is not lost to a reset). */
    private void rejectLoop() {
        byte[] sink = new byte[8192];
        while (!closed) {
            Socket s;
            try {
                s = refused.take();
            } catch (InterruptedException e) {
                return;
            }
            try (s) {
                s.setSoTimeout(20);
                OutputStream out = s.getOutputStream();
                out.write(busyAnswer);
                out.flush();
                s.shutdownOutput();
                InputStream in = s.getInputStream();
                long until = System.nanoTime() + 100_000_000L;
                while (System.nanoTime() < until && in.read(sink) >= 0) { /* drain */ }
            } catch (IOException ignored) {
                // the client went away or sent nothing more: closed either way
            }
        }
    }

    private void reapLoop() {
        while (!closed) {
            try {
                Thread.sleep(REAP_EVERY_MS);
            } catch (InterruptedException e) {
                return;
            }
            long now = System.nanoTime();
            for (Conn c : open) if (now - c.deadline > 0) c.kill();
        }
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }

    // ================================================================================================ connection

    private final class Conn implements Runnable {
        final Socket socket;
        volatile long deadline;                                    // System.nanoTime() past which the reaper closes it
        volatile boolean busy;                                     // between a request's first byte and the end of its answer

        Conn(Socket socket) {
            this.socket = socket;
            this.deadline = System.nanoTime() + limits.idleMs() * 1_000_000L;
        }

        void kill() { closeQuietly(socket); }

        void expireIn(long ms) { deadline = System.nanoTime() + ms * 1_000_000L; }

        void noDeadline() { deadline = System.nanoTime() + Long.MAX_VALUE / 2; }

        long deadlineForWrites() { return limits.writeMs(); }

        @Override
        public void run() {
            try (socket) {
                InputStream in = new BufferedInputStream(socket.getInputStream(), 16 * 1024);
                OutputStream out = socket.getOutputStream();
                while (!closed) {
                    expireIn(limits.idleMs());                     // waiting for the next request
                    int first = in.read();
                    if (first < 0) return;
                    busy = true;
                    expireIn(limits.readMs());                     // the whole request from its first byte
                    Exchange ex = read(first, in, out);
                    noDeadline();                                  // the handler waits for the engine, not the client
                    try {
                        handler.handle(ex);
                    } catch (RuntimeException e) {
                        if (!ex.responded) ex.send(500, "application/json", "{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,\"code\":500}}"
                                .getBytes(StandardCharsets.UTF_8));
                    }
                    if (!ex.responded) ex.send(500, "text/plain", "no answer".getBytes(StandardCharsets.UTF_8));
                    if (ex.closeAfter) { lingerClose(in); return; }
                    busy = false;
                }
            } catch (IOException e) {
                // the client went away, or the reaper closed a connection past its deadline
            } finally {
                open.remove(this);
            }
        }

        /**
         * Ends the connection after an answer that may have left a body unread (413, a malformed request): shuts the
         * output (the answer is complete) and drains what the client still sends for a moment, so that closing does
         * not reset the connection before the client has read the answer.
         */
        private void lingerClose(InputStream in) {
            try {
                socket.shutdownOutput();
                expireIn(500);
                byte[] sink = new byte[16 * 1024];
                long left = 4L * limits.maxBodyBytes() + MAX_HEAD_BYTES;
                for (int r; left > 0 && (r = in.read(sink)) >= 0; ) left -= r;
            } catch (IOException ignored) {
                // closed by the client or the reaper: done either way
            }
        }

        /** Reads one request (its first byte already read); protocol errors become {@link Exchange#error}. */
        private Exchange read(int first, InputStream in, OutputStream out) throws IOException {
            Exchange ex = new Exchange(this, out);
            int[] budget = {MAX_HEAD_BYTES - 1};
            String line = (char) first + readLine(in, budget);
            if (line == null) throw new IOException("closed in the request line");
            String[] parts = line.split(" ", -1);
            if (parts.length != 3 || !parts[2].startsWith("HTTP/1.")) return ex.fail(400, "malformed request line");
            ex.method = parts[0];
            String target = parts[1];
            int q = target.indexOf('?');
            ex.path = q >= 0 ? target.substring(0, q) : target;
            boolean http10 = parts[2].equals("HTTP/1.0");
            for (String h; !(h = readLine(in, budget)).isEmpty(); ) {
                int colon = h.indexOf(':');
                if (colon <= 0) return ex.fail(400, "malformed header line");
                String name = h.substring(0, colon).trim().toLowerCase(Locale.ROOT), value = h.substring(colon + 1).trim();
                String before = ex.headers.putIfAbsent(name, value);
                if (before != null && name.equals("content-length") && !before.equals(value))
                    return ex.fail(400, "Content-Length: two different values");
            }
            String conn = ex.headers.getOrDefault("connection", "").toLowerCase(Locale.ROOT);
            ex.closeAfter = conn.contains("close") || http10 && !conn.contains("keep-alive");
            String te = ex.headers.get("transfer-encoding"), cl = ex.headers.get("content-length");
            if (te != null && cl != null) return ex.fail(400, "Transfer-Encoding and Content-Length together");
            if (te != null && !te.equalsIgnoreCase("chunked")) return ex.fail(400, "Transfer-Encoding: only chunked is supported, got '" + te + "'");
            long length = 0;
            if (cl != null) {
                if (!cl.matches("[0-9]{1,18}")) return ex.fail(400, "Content-Length: not a non-negative integer: '" + cl + "'");
                length = Long.parseLong(cl);
                if (length > limits.maxBodyBytes()) return ex.fail(413, "request body of " + length + " bytes exceeds the limit of "
                        + limits.maxBodyBytes() + " bytes (--max-body-bytes)");
            }
            if ((te != null || length > 0) && "100-continue".equalsIgnoreCase(ex.headers.get("expect"))) {
                out.write("HTTP/1.1 100 Continue\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                out.flush();
            }
            ex.body = te != null ? readChunked(in, ex) : in.readNBytes((int) length);
            if (ex.body == null) return ex;                        // a chunked body failed (error set)
            if (ex.body.length < length) throw new IOException("closed in the body");
            return ex;
        }

        private byte[] readChunked(InputStream in, Exchange ex) throws IOException {
            ByteArrayOutputStream body = new ByteArrayOutputStream();
            int[] budget = {MAX_HEAD_BYTES};
            while (true) {
                String sizeLine = readLine(in, budget);
                int semi = sizeLine.indexOf(';');
                String hex = (semi >= 0 ? sizeLine.substring(0, semi) : sizeLine).trim();
                if (!hex.matches("[0-9a-fA-F]{1,8}")) { ex.fail(400, "malformed chunk size '" + hex + "'"); return null; }
                long n = Long.parseLong(hex, 16);
                if (n == 0) break;
                if (body.size() + n > limits.maxBodyBytes()) {
                    ex.fail(413, "request body exceeds the limit of " + limits.maxBodyBytes() + " bytes (--max-body-bytes)");
                    return null;
                }
                byte[] chunk = in.readNBytes((int) n);
                if (chunk.length < n) throw new IOException("closed in a chunk");
                body.write(chunk);
                if (!readLine(in, budget).isEmpty()) { ex.fail(400, "malformed chunk: no CRLF after its data"); return null; }
            }
            while (!readLine(in, budget).isEmpty()) { /* trailers: ignored */ }
            return body.toByteArray();
        }

        /** One line without its CRLF (or LF); {@code budget[0]} counts down the bytes allowed. */
        private String readLine(InputStream in, int[] budget) throws IOException {
            StringBuilder sb = new StringBuilder();
            while (true) {
                int b = in.read();
                if (b < 0) throw new IOException("closed in the request head");
                if (--budget[0] < 0) throw new IOException("request head too large");
                if (b == '\n') break;
                sb.append((char) b);                               // ISO-8859-1, as HTTP header bytes are
            }
            int n = sb.length();
            if (n > 0 && sb.charAt(n - 1) == '\r') sb.setLength(n - 1);
            return sb.toString();
        }
    }

    // ================================================================================================== exchange

    /** One request and its answer. */
    static final class Exchange {
        private final Conn conn;
        private final OutputStream out;
        String method = "", path = "";
        final Map<String, String> headers = new LinkedHashMap<>();   // names in lower case, first value of each
        byte[] body = new byte[0];
        Failure error;                                               // a malformed request: answer it with this
        boolean closeAfter, responded;

        Exchange(Conn conn, OutputStream out) {
            this.conn = conn;
            this.out = out;
        }

        Exchange fail(int status, String message) {
            error = new Failure(status, message);
            closeAfter = true;                                       // what follows on the connection cannot be trusted
            return this;
        }

        String method() { return method; }
        String path() { return path; }
        String header(String name) { return headers.get(name.toLowerCase(Locale.ROOT)); }
        byte[] body() { return body; }
        Failure error() { return error; }

        /** Asks for the connection to close after this answer. */
        void close() { closeAfter = true; }

        /** A complete answer with Content-Length. */
        void send(int status, String contentType, byte[] body) throws IOException { send(status, contentType, Map.of(), body); }

        void send(int status, String contentType, Map<String, String> extra, byte[] body) throws IOException {
            if (responded) throw new IllegalStateException("answered twice");
            responded = true;
            write(response(status, contentType, body.length, closeAfter, extra, body));
        }

        /** Starts a chunked answer (server-sent events); each {@code write} + {@code flush} is sent, {@code close} ends it. */
        OutputStream startStream(int status, String contentType, Map<String, String> extra) throws IOException {
            if (responded) throw new IllegalStateException("answered twice");
            responded = true;
            write(response(status, contentType, -1, closeAfter, extra, null));
            return new OutputStream() {
                private final ByteArrayOutputStream pending = new ByteArrayOutputStream();
                private boolean ended;

                @Override public void write(int b) { pending.write(b); }
                @Override public void write(byte[] b, int off, int len) { pending.write(b, off, len); }

                @Override
                public void flush() throws IOException {
                    if (pending.size() == 0) return;
                    byte[] data = pending.toByteArray();
                    pending.reset();
                    ByteArrayOutputStream chunk = new ByteArrayOutputStream(data.length + 16);
                    chunk.write((Integer.toHexString(data.length) + "\r\n").getBytes(StandardCharsets.US_ASCII));
                    chunk.write(data);
                    chunk.write("\r\n".getBytes(StandardCharsets.US_ASCII));
                    Exchange.this.write(chunk.toByteArray());
                }

                @Override
                public void close() throws IOException {
                    if (ended) return;
                    ended = true;
                    flush();
                    Exchange.this.write("0\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                }
            };
        }

        /** Writes within the write deadline (the reaper closes the socket of a client that does not read). */
        private void write(byte[] bytes) throws IOException {
            conn.expireIn(conn.deadlineForWrites());
            try {
                out.write(bytes);
                out.flush();
            } finally {
                conn.noDeadline();
            }
        }
    }

    static byte[] response(int status, String contentType, long length, boolean close, Map<String, String> extra, byte[] body) {
        StringBuilder h = new StringBuilder("HTTP/1.1 ").append(status).append(' ').append(reason(status)).append("\r\n");
        if (contentType != null) h.append("Content-Type: ").append(contentType).append("\r\n");
        if (length >= 0) h.append("Content-Length: ").append(length).append("\r\n");
        else h.append("Transfer-Encoding: chunked\r\n");
        for (var e : extra.entrySet()) h.append(e.getKey()).append(": ").append(e.getValue()).append("\r\n");
        h.append("Connection: ").append(close ? "close" : "keep-alive").append("\r\n\r\n");
        byte[] head = h.toString().getBytes(StandardCharsets.ISO_8859_1);
        if (body == null || body.length == 0) return head;
        byte[] all = new byte[head.length + body.length];
        System.arraycopy(head, 0, all, 0, head.length);
        System.arraycopy(body, 0, all, head.length, body.length);
        return all;
    }

    static String reason(int status) {
        return switch (status) {
            case 200 -> "OK";
            case 400 -> "Bad Request";
            case 404 -> "Not Found";
            case 405 -> "Method Not Allowed";
            case 413 -> "Payload Too Large";
            case 429 -> "Too Many Requests";
            case 500 -> "Internal Server Error";
            case 503 -> "Service Unavailable";
            default -> "Status";
        };
    }
}
