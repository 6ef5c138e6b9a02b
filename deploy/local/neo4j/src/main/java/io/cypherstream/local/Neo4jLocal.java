package io.cypherstream.local;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

/**
 * Neo4j Community embedded, reachable over Bolt, for machines without Docker.
 *
 * <p>Usage: {@code Neo4jLocal --data DIR --port PORT [--host 127.0.0.1] [--password PW]}.
 * With a password, auth is on and user {@code neo4j} gets that password; without
 * one, auth is off. Prints {@code BOLT READY bolt://host:port} once Bolt accepts
 * connections (and, as Neo4j's server does, {@code Remote interface available at ...}),
 * and shuts the database down cleanly on SIGTERM or SIGINT.
 */
public final class Neo4jLocal {
    private Neo4jLocal() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = parse(args);
        Path data = Path.of(require(opts, "--data")).toAbsolutePath();
        int port = Integer.parseInt(require(opts, "--port"));
        String host = opts.getOrDefault("--host", "127.0.0.1");
        String password = opts.get("--password");

        if (password != null) {
            setInitialPassword(data, password);
        }
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(data)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, password != null)
                .setConfig(GraphDatabaseSettings.pagecache_memory, 128L * 1024 * 1024)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("SHUTTING DOWN");
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-local-shutdown"));

        try {
            // Touch the default database so it is started before we report ready.
            dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).executeTransactionally("RETURN 1");
        } catch (RuntimeException e) {
            e.printStackTrace();
            System.exit(1); // runs the shutdown hook; never linger half-started
        }
        System.out.println("BOLT READY bolt://" + host + ":" + port);
        // Neo4j's own server says this when Bolt is up; tools (testcontainers) wait for it.
        System.out.println("Remote interface available at bolt://" + host + ":" + port + "/");
        System.out.flush();
        stopped.await();
    }

    /**
     * Sets the password of user neo4j before Bolt opens, as a real server's initial
     * password is: with Bolt off, so no client can ever meet the default password.
     * A marker (a hash, not the password) skips this on a restart with the same one.
     */
    private static void setInitialPassword(Path data, String password) throws Exception {
        Path marker = data.resolve("initial-password.sha256");
        byte[] digest = MessageDigest.getInstance("SHA-256")
                .digest(password.getBytes(StandardCharsets.UTF_8));
        String hash = HexFormat.of().formatHex(digest);
        if (Files.exists(marker) && Files.readString(marker).equals(hash)) {
            return;
        }
        DatabaseManagementService offline = new DatabaseManagementServiceBuilder(data)
                .setConfig(BoltConnector.enabled, false)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, 128L * 1024 * 1024)
                .build();
        try {
            offline.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (RuntimeException e) {
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        } finally {
            offline.shutdown();
        }
        Files.writeString(marker, hash);
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new java.util.HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                usage("unexpected argument " + args[i]);
            }
            opts.put(args[i], args[i + 1]);
        }
        if (args.length % 2 != 0) {
            usage("option " + args[args.length - 1] + " needs a value");
        }
        return opts;
    }

    private static String require(Map<String, String> opts, String name) {
        String value = opts.get(name);
        if (value == null) {
            usage("missing " + name);
        }
        return value;
    }

    private static void usage(String problem) {
        System.err.println("neo4j-local: " + problem);
        System.err.println("usage: Neo4jLocal --data DIR --port PORT [--host HOST] [--password PW]");
        System.exit(2);
    }
}
