// The job `bench compare` runs on Apache Flink: the same Kafka -> parse JSON,
// add one field -> Kafka pipeline as Sluice's, exactly once, in a local
// MiniCluster. It reads the input topic from its start to where it ended when
// the job started, then finishes after its final checkpoint committed.
//
// Usage: java -cp <classes>:<flink jars>/* FlinkBench BROKERS INPUT OUTPUT PARALLELISM CHECKPOINT_MS

import java.util.UUID;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.streaming.api.CheckpointingMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class FlinkBench {
    public static void main(String[] args) throws Exception {
        String brokers = args[0];
        String input = args[1];
        String output = args[2];
        int parallelism = Integer.parseInt(args[3]);
        long checkpointMs = Long.parseLong(args[4]);
        String run = UUID.randomUUID().toString();

        StreamExecutionEnvironment env =
                StreamExecutionEnvironment.createLocalEnvironment(parallelism, new Configuration());
        env.enableCheckpointing(checkpointMs, CheckpointingMode.EXACTLY_ONCE);

        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(brokers)
                .setTopics(input)
                .setGroupId("flink-bench-" + run)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setValueOnlyDeserializer(new SimpleStringSchema())
                .build();
        KafkaSink<String> sink = KafkaSink.<String>builder()
                .setBootstrapServers(brokers)
                .setRecordSerializer(KafkaRecordSerializationSchema.builder()
                        .setTopic(output)
                        .setValueSerializationSchema(new SimpleStringSchema())
                        .build())
                .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .setTransactionalIdPrefix("flink-bench-" + run)
                .setProperty("transaction.timeout.ms", "600000")
                .build();
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka")
                .map(new AddField())
                .sinkTo(sink);
        env.execute("flink-bench");
    }

    /** Parses the record, adds `n2 = n + 1`, writes it back. */
    static class AddField extends RichMapFunction<String, String> {
        private transient ObjectMapper json;

        @Override
        public void open(OpenContext context) {
            json = new ObjectMapper();
        }

        @Override
        public String map(String value) throws Exception {
            ObjectNode record = (ObjectNode) json.readTree(value);
            record.put("n2", record.get("n").asLong() + 1);
            return json.writeValueAsString(record);
        }
    }
}
