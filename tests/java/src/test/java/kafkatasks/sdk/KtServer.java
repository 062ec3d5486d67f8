package kafkatasks.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.huaweicloud.sdk.core.ClientBuilder;
import com.huaweicloud.sdk.core.HttpListener;
import com.huaweicloud.sdk.core.auth.BasicCredentials;
import com.huaweicloud.sdk.core.auth.SigningAlgorithm;
import com.huaweicloud.sdk.core.http.HttpConfig;
import com.huaweicloud.sdk.core.region.Region;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

/**
 * The real kafka-tasks binary on a fresh SQLite database, one per test class (as
 * tests/sdk/kt_server.py does for the Python SDK), and official Java SDK clients pointed at it.
 *
 * <p>The binary is {@code $KAFKA_TASKS_BIN}, else {@code target/debug/kafka-tasks} of the
 * repository. The first admin key is the one {@code serve} writes to initial-credential.json
 * beside the master key file on an empty database; {@link #credential} makes more.
 */
final class KtServer implements AutoCloseable {
  static final String PROJECT = "0123456789abcdef0123456789abcdef";
  static final String OTHER_PROJECT = "fedcba9876543210fedcba9876543210";

  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * The Java SDK's signing modes: its four {@link SigningAlgorithm}s, and derived AK/SK
   * (V11-HMAC-SHA256), which credentials with a derived predicate use whatever the algorithm.
   * The classes that run once per mode name it in their {@code @ParameterizedClass}.
   */
  static final String[] SIGNING_MODES = {
    "hmac-sha256", "hmac-sm3", "ecdsa-p256-sha256", "sm2-sm3", "v11-hmac-sha256"
  };

  /**
   * The default mode alone, for the classes that need not run per mode: the server checks every
   * signature in one place whatever the operation, so the classes that send each shape of signed
   * request (a query string, a JSON body on POST and PUT, a DELETE) run in every mode, the
   * others in this one.
   */
  static final String[] DEFAULT_SIGNING_MODE = {"hmac-sha256"};

  /** What the server expects in a V11 credential scope by default. */
  static final String V11_REGION = "cn-north-4";
  static final String V11_SERVICE = "dms";

  /** The mode of the clients made without an explicit algorithm (one of SIGNING_MODES). */
  String signing = "hmac-sha256";

  final String url;
  final Credential admin;
  private final Path dir;
  private final String db;
  private final Path keyFile;
  private final Process proc;
  private final Deque<String> lastLines = new ArrayDeque<>();
  private final List<String> errors = new ArrayList<>();

  /** An access key as `credentials create` prints it (and initial-credential.json holds it). */
  record Credential(String accessKey, String secretKey, String projectId) {
    static Credential of(JsonNode json) {
      return new Credential(json.get("access_key").asText(), json.get("secret_key").asText(),
          json.get("project_id").asText());
    }

    Credential withSecretKey(String secretKey) {
      return new Credential(accessKey, secretKey, projectId);
    }
  }

  /** Starts {@code serve} with {@code flags} added, and waits for its "listening" log line. */
  KtServer(String... flags) throws IOException, InterruptedException {
    dir = Files.createTempDirectory("kafka-tasks-java-");
    db = "sqlite:" + dir.resolve("java.db");
    keyFile = dir.resolve("master.key");
    List<String> cmd = new ArrayList<>(List.of(binary(), "serve", "--listen", "127.0.0.1:0",
        "--log-format", "json", "--poll-ms", "20", "--metrics-listen", "off",
        "--database", db, "--master-key-file", keyFile.toString()));
    cmd.addAll(List.of(flags));
    proc = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();

    CompletableFuture<String> listening = new CompletableFuture<>();
    // Reads stderr to its end, so that the server never blocks on a full pipe.
    Thread reader = new Thread(() -> {
      try (BufferedReader in = new BufferedReader(
          new InputStreamReader(proc.getErrorStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = in.readLine()) != null; ) {
          JsonNode rec = parse(line);
          remember(line, rec);
          if (rec != null && "listening".equals(rec.path("message").asText())) {
            listening.complete(rec.get("addr").asText());
          }
        }
      } catch (IOException e) {
        // The process was killed.
      }
      listening.completeExceptionally(new IllegalStateException("kafka-tasks exited"));
    }, "kafka-tasks-stderr");
    reader.setDaemon(true);
    reader.start();

    String addr;
    try {
      addr = listening.get(20, TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException | TimeoutException e) {
      String log = String.join("\n", lastLines());
      close();
      throw new IllegalStateException("kafka-tasks did not start:\n" + log, e);
    }
    url = "http://" + addr;
    admin = Credential.of(JSON.readTree(dir.resolve("initial-credential.json").toFile()));
  }

  private static String binary() {
    String bin = System.getenv("KAFKA_TASKS_BIN");
    if (bin != null && !bin.isEmpty()) {
      return bin;
    }
    // Maven runs the tests in tests/java.
    return Paths.get("..", "..", "target", "debug", "kafka-tasks").toAbsolutePath().normalize().toString();
  }

  private static JsonNode parse(String line) {
    try {
      return JSON.readTree(line);
    } catch (IOException e) {
      return null;
    }
  }

  private synchronized void remember(String line, JsonNode rec) {
    if (rec != null && "ERROR".equals(rec.path("level").asText())) {
      errors.add(line);
    }
    lastLines.addLast(line);
    if (lastLines.size() > 50) {
      lastLines.removeFirst();
    }
  }

  /** The lines the server logged at ERROR level (a 5xx answer's cause is logged so). */
  synchronized List<String> errors() {
    return new ArrayList<>(errors);
  }

  synchronized List<String> lastLines() {
    return new ArrayList<>(lastLines);
  }

  /** An access key made with {@code kafka-tasks credentials create}. */
  Credential credential(String user, String role, String project) {
    return Credential.of(parse(run(binary(), "credentials", "create", "--project-id", project,
        "--user-name", user, "--role", role, "--database", db, "--master-key-file", keyFile.toString())));
  }

  Credential credential(String user, String role) {
    return credential(user, role, PROJECT);
  }

  /**
   * Adds a newer kernel build for an engine version ({@code kafka-tasks kernels add}), so that
   * the latest version moves ahead of the instances.
   */
  void addKernel(String engineVersion, String build) {
    run(binary(), "kernels", "add", "--engine-version", engineVersion, "--build", build, "--database", db);
  }

  private static String run(String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (p.waitFor() != 0) {
        throw new IllegalStateException(String.join(" ", cmd) + " failed:\n" + out);
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** The official Java SDK's Kafka client, pointed at this server, signing with the admin key. */
  TaskKafkaClient client() {
    return client(admin, admin.projectId(), null);
  }

  TaskKafkaClient client(Credential cred) {
    return client(cred, cred.projectId(), null);
  }

  /**
   * A client signing with {@code cred} for {@code projectId} (the project of the paths it calls).
   * An explicit project id and no region: the SDK then never calls IAM; it takes a plain
   * {@code http://} endpoint as it is. A null algorithm keeps the SDK's default, SDK-HMAC-SHA256.
   */
  TaskKafkaClient client(Credential cred, String projectId, SigningAlgorithm algorithm) {
    return client(cred, projectId, algorithm, null);
  }

  /** As above, with {@code listener} shown every request the SDK sends and every answer. */
  TaskKafkaClient client(Credential cred, String projectId, SigningAlgorithm algorithm, HttpListener listener) {
    HttpConfig config = HttpConfig.getDefaultHttpConfig()
        .withConnectionTimeout(5)
        .withReadTimeout(20);
    boolean derived = algorithm == null && signing.equals("v11-hmac-sha256");
    if (algorithm == null) {
      algorithm = switch (signing) {
        case "hmac-sm3" -> SigningAlgorithm.HMAC_SM3;
        case "ecdsa-p256-sha256" -> SigningAlgorithm.ECDSA_P256_SHA256;
        case "sm2-sm3" -> SigningAlgorithm.SM2_SM3;
        default -> null;
      };
    }
    if (algorithm != null) {
      config.withSigningAlgorithm(algorithm);
    }
    if (listener != null) {
      config.addHttpListener(listener);
    }
    BasicCredentials credentials = new BasicCredentials()
        .withAk(cred.accessKey()).withSk(cred.secretKey()).withProjectId(projectId);
    ClientBuilder<TaskKafkaClient> builder = new ClientBuilder<>(TaskKafkaClient::new)
        .withHttpConfig(config)
        .withCredential(credentials);
    if (derived) {
      // The region's id and the builder's service name make the credential scope; the Kafka
      // client names no service of its own, so the caller does.
      credentials.withDerivedPredicate(request -> true);
      return builder.withRegion(new Region(V11_REGION, url)).withDerivedAuthServiceName(V11_SERVICE).build();
    }
    return builder.withEndpoint(url).build();
  }

  /** Stops the server, then fails the test class if it logged anything at ERROR level. */
  void closeExpectingNoErrors() {
    List<String> errors = errors();
    close();
    org.junit.jupiter.api.Assertions.assertEquals(List.of(), errors, "the server logged errors");
  }

  @Override
  public void close() {
    proc.destroyForcibly();
    try {
      proc.waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // A temporary directory left behind is harmless.
    }
  }
}
