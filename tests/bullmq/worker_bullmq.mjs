// One BullMQ worker process of lro-bench, forked by bench_bullmq.mjs (which talks to it over the
// IPC channel). Processes `noop` (returns at once) and `wait` (runs until aborted).
//
// The cancel relay is what BullMQ users build, since BullMQ has no cross-process cancel: every
// worker subscribes to one Redis channel, and on a job id calls `worker.cancelJob(id)`, which
// aborts the processor's AbortSignal if this worker runs the job (and is a no-op otherwise).
import { Worker } from 'bullmq';
import IORedis from 'ioredis';

const [url, prefix, queueName, concurrency] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC, shared by processes

const worker = new Worker(
  queueName,
  async (job, _token, signal) => {
    if (job.name === 'noop') return {};
    process.send({ started: job.id });
    await new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', resolve, { once: true });
    });
    process.send({ aborted: job.id, at: now() });
    throw new Error('cancelled');
  },
  {
    connection: new IORedis(url, { maxRetriesPerRequest: null }),
    prefix,
    concurrency: Number(concurrency),
  },
);
worker.on('error', (e) => console.error('bullmq worker:', e));

const relay = new IORedis(url);
relay.on('message', (_channel, id) => worker.cancelJob(id));
await relay.subscribe(`${prefix}:cancel`);
await worker.waitUntilReady();

process.on('message', async (m) => {
  if (m.concurrency) {
    worker.concurrency = m.concurrency;
  } else if (m.close) {
    await worker.close(true);
    relay.disconnect();
    process.exit(0);
  }
});
process.send({ ready: true });
