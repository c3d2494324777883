#!/usr/bin/env python3
"""Block-commit driven by a QMP client that QcowKit did not write.

QEMU's own Python client (`qemu.qmp` from PyPI, asyncio) connects to a QMP
service over a unix socket, negotiates, runs an intermediate commit and an
active commit on a base <- mid <- top chain, waits for their events, looks at
the job while it is ready, and quits. Afterwards `qemu-img` checks the images,
their backing links and their data.

The service is any program that takes QEMU's `--blockdev` option and either
`--chardev` with `--monitor chardev=m` or `-qmp unix:...`: qemu-storage-daemon
(the first form) and `qemu-system-x86_64 -M none -nodefaults -display none`
(the second) validate this script, then `qcowkit serve` runs it.

The harness monitors start the service as QEMU's own test harnesses do, the
client listening and the service connecting to it:
  machine     as QEMUMachine (python/qemu/machine, 7.2) builds a command line:
              -display none -vga none -chardev socket,id=mon,path=SOCK
              -mon chardev=mon,mode=control, then VM-only options a harness adds
              (-machine none -monitor none -nographic -serial none -accel tcg
              -nodefaults -S -name ...); validated with qemu-system-x86_64
  machine-fd  the same with the monitor on one end of a socketpair
              (-chardev socket,id=mon,fd=N, QEMUMachine from QEMU 8.1 on)
  qtest       as QEMUQtestMachine (every iotests VM): machine's command line
              and -qtest unix:path=QSOCK -accel qtest, the harness listening
              on QSOCK too; a qtest command must be answered as unknown
              (Debian's QEMU 7.2 has no qtest accelerator: -accel tcg after
              it is the fallback QEMU takes)
  daemon      as iotests' QemuStorageDaemon: --pidfile P --chardev
              socket,id=qmp-sock,path=SOCK --monitor qmp-sock; the PID file
              must name the service once it is up and be gone after quit;
              validated with qemu-storage-daemon

    qmp_client_commit.py [--service 'qemu-storage-daemon']
                         [--monitor chardev|qmp|machine|machine-fd|qtest|daemon]
                         [--qemu-img qemu-img] [--qemu-io qemu-io] [--timeout 20]
                         [--keep DIR]

Prints what it does; exits 0 when every check passed, 1 with the reason
otherwise.
"""

import argparse
import asyncio
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import traceback

from qemu.qmp import QMPClient

SIZE = 64 << 20


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def run(command, expect_status=0):
    """Runs an offline tool; returns its stdout. A status other than
    expect_status fails the test with the tool's output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    check(done.returncode == expect_status,
          f"{shlex.join(command)} exited {done.returncode}, expected {expect_status}:\n"
          f"{done.stdout}{done.stderr}")
    return done.stdout


class Scenario:
    def __init__(self, args, directory):
        self.args = args
        self.service = shlex.split(args.service)
        self.qemu_img = shlex.split(args.qemu_img)
        self.qemu_io = shlex.split(args.qemu_io)
        self.dir = directory
        self.base = os.path.join(directory, "base.qcow2")
        self.mid = os.path.join(directory, "mid.qcow2")
        self.top = os.path.join(directory, "top.qcow2")
        self.reference = os.path.join(directory, "reference.raw")
        self.socket = os.path.join(directory, "qmp.sock")
        self.pidfile = os.path.join(directory, "service.pid")
        self.pair = None  # machine-fd: (the service's end, ours)
        self.qtest_socket = os.path.join(directory, "qtest.sock")
        self.qtest_listener = None
        self.events = []  # every event received, in order: (name, data)

    # --- images ------------------------------------------------------------

    def make_images(self):
        img = self.qemu_img
        run(img + ["create", "-f", "qcow2", self.base, str(SIZE)])
        run(img + ["create", "-f", "qcow2", "-b", self.base, "-F", "qcow2", self.mid])
        run(img + ["create", "-f", "qcow2", "-b", self.mid, "-F", "qcow2", self.top])
        # Overlapping writes, so that which layer wins matters after each commit.
        for image, commands in [
            (self.base, ["write -P 0x11 0 128k", "write -P 0x12 4M 64k"]),
            (self.mid, ["write -P 0x22 64k 128k", "write -P 0x23 1M 64k",
                        "write -z 4M 32k"]),
            (self.top, ["write -P 0x33 96k 64k", "write -P 0x34 2M 192k",
                        "write -P 0x35 63M 64k"]),
        ]:
            command = self.qemu_io + ["-f", "qcow2"]
            for c in commands:
                command += ["-c", c]
            run(command + [image])
        # What the guest sees through top before any commit: every commit
        # must leave this view unchanged.
        run(img + ["convert", "-f", "qcow2", "-O", "raw", self.top, self.reference])

    # --- the service ---------------------------------------------------------

    # Options only a virtual machine uses, as a harness passes them.
    VM_ONLY = ["-machine", "none", "-monitor", "none", "-nographic", "-serial", "none",
               "-accel", "tcg", "-nodefaults", "-S", "-name", "harness"]

    def service_command(self):
        blockdev = "driver=qcow2,file.driver=file,file.filename={},node-name={}"
        blockdevs = [
            "--blockdev", blockdev.format(self.base, "base"),
            "--blockdev", blockdev.format(self.mid, "mid") + ",backing=base",
            "--blockdev", blockdev.format(self.top, "top") + ",backing=mid",
        ]
        monitor = self.args.monitor
        if monitor in ("machine", "machine-fd", "qtest"):
            chardev = (f"socket,id=mon,fd={self.pair[0].fileno()}" if monitor == "machine-fd"
                       else f"socket,id=mon,path={self.socket}")
            qtest = (["-qtest", f"unix:path={self.qtest_socket}", "-accel", "qtest"]
                     if monitor == "qtest" else [])
            return self.service + ["-display", "none", "-vga", "none", "-chardev", chardev,
                                   "-mon", "chardev=mon,mode=control"] + qtest + blockdevs + self.VM_ONLY
        if monitor == "daemon":
            return self.service + blockdevs + [
                "--pidfile", self.pidfile,
                "--chardev", f"socket,id=qmp-sock,path={self.socket}", "--monitor", "qmp-sock"]
        return self.service + blockdevs + ({
            "chardev": ["--chardev", f"socket,path={self.socket},server=on,wait=off,id=m",
                        "--monitor", "chardev=m"],
            "qmp": ["-qmp", f"unix:{self.socket},server=on,wait=off"],
        }[monitor])

    async def start_service(self):
        self.qmp = QMPClient("qcowkit-conformance")
        harness = self.args.monitor in ("machine", "machine-fd", "qtest", "daemon")
        if self.args.monitor == "qtest":
            self.qtest_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.qtest_listener.bind(self.qtest_socket)
            self.qtest_listener.listen(1)
            self.qtest_listener.settimeout(self.args.timeout)
        if self.args.monitor == "machine-fd":
            self.pair = socket.socketpair()
        elif harness:
            # The harness listens first; the service connects to it.
            await self.qmp.start_server(self.socket)
        command = self.service_command()
        print("$", shlex.join(command))
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=[self.pair[0].fileno()] if self.pair else [])
        # Drained all along, so that a chatty service never blocks on a full pipe.
        self.output = asyncio.ensure_future(self.process.stdout.read())
        if harness:
            try:
                if self.pair:
                    self.pair[0].close()
                    await asyncio.wait_for(self.qmp.connect(self.pair[1]), self.args.timeout)
                else:
                    await asyncio.wait_for(self.qmp.accept(), self.args.timeout)
            except Exception as error:
                output = await self.collect_output()
                raise CheckFailed(f"the service never greeted the harness ({error!r}):\n{output}")
            if self.args.monitor == "daemon":
                await self.check_pidfile()
            if self.qtest_listener:
                await asyncio.get_running_loop().run_in_executor(None, self.qtest_exchange)
            return
        # The socket exists once the service listens (wait=off: it does not
        # wait for us before opening the images).
        for _ in range(int(self.args.timeout * 20)):
            if os.path.exists(self.socket):
                await asyncio.wait_for(self.qmp.connect(self.socket), self.args.timeout)
                return
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        output = await self.collect_output()
        raise CheckFailed(f"the service did not open {self.socket}:\n{output}")

    def qtest_exchange(self):
        """As QEMUQtestMachine: accept the qtest connection, then one command."""
        try:
            connection, _ = self.qtest_listener.accept()
        except OSError as error:
            raise CheckFailed(f"the service did not connect to the qtest socket: {error!r}")
        with connection:
            connection.settimeout(self.args.timeout)
            connection.sendall(b"clock_step\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(4096)
                check(chunk, f"the qtest channel closed after {reply!r}")
                reply += chunk
        check(reply == b"FAIL Unknown command 'clock_step'\n", f"qtest reply {reply!r}")
        print("qtest", repr(reply))

    async def check_pidfile(self):
        """As iotests' QemuStorageDaemon: the PID file appears and names the service."""
        for _ in range(int(self.args.timeout * 20)):
            if os.path.exists(self.pidfile):
                break
            await asyncio.sleep(0.05)
        with open(self.pidfile) as f:
            text = f.read()
        check(text == f"{self.process.pid}\n", f"PID file {text!r}, the service is {self.process.pid}")
        print("pidfile", repr(text))

    async def collect_output(self):
        try:
            data = await asyncio.wait_for(asyncio.shield(self.output), self.args.timeout)
        except asyncio.TimeoutError:
            data = b"(no end of output)"
        return data.decode(errors="replace")

    # --- events --------------------------------------------------------------

    async def next_event(self, what):
        try:
            event = await asyncio.wait_for(self.qmp.events.get(), self.args.timeout)
        except asyncio.TimeoutError:
            raise CheckFailed(f"timed out waiting for {what}; events so far: {self.events}")
        record = (event["event"], dict(event.get("data", {})))
        print("event", record)
        self.events.append(record)
        return record

    async def wait_event(self, name, **data):
        """Waits for the event `name` whose data contains `data`; returns it."""
        while True:
            event_name, event_data = await self.next_event(f"{name} {data}")
            if event_name == name and all(event_data.get(k) == v for k, v in data.items()):
                return event_data

    def job_events(self, job):
        """The job's events in order, as short strings (status changes by
        status, block-job events by name)."""
        trace = []
        for name, data in self.events:
            if name == "JOB_STATUS_CHANGE" and data.get("id") == job:
                trace.append(data["status"])
            elif name.startswith("BLOCK_JOB_") and data.get("device") == job:
                trace.append(name)
        return trace

    async def execute(self, command, arguments=None):
        print("->", command, arguments or "")
        reply = await asyncio.wait_for(self.qmp.execute(command, arguments), self.args.timeout)
        print("<-", reply)
        return reply

    async def node(self, name):
        nodes = await self.execute("query-named-block-nodes")
        matching = [n for n in nodes if n.get("node-name") == name]
        check(len(matching) == 1, f"node {name} not listed once: {[n.get('node-name') for n in nodes]}")
        return matching[0]

    # --- the scenario ----------------------------------------------------------

    async def run(self):
        self.make_images()
        try:
            await self.start_service()
            await self.commits()
            await self.quit()
        except BaseException:
            await self.stop_service()
            raise
        if self.args.monitor == "daemon":
            check(not os.path.exists(self.pidfile), "the PID file is still there after quit")
        self.check_images()

    async def commits(self):
        greeting = self.qmp.greeting.QMP
        print("greeting", greeting.version, greeting.capabilities)
        check("qemu" in greeting.version, f"greeting: {greeting}")
        # connect() negotiated: commands work now.
        check(await self.execute("query-block-jobs") == [], "jobs before any commit")

        # Intermediate commit: mid into base, top then backed by base.
        reply = await self.execute("block-commit", {
            "job-id": "commit-mid", "device": "top",
            "top-node": "mid", "base-node": "base"})
        check(reply == {}, f"block-commit returned {reply}")
        completed = await self.wait_event("BLOCK_JOB_COMPLETED", device="commit-mid")
        check(completed == {"device": "commit-mid", "len": SIZE, "offset": SIZE,
                            "speed": 0, "type": "commit"},
              f"BLOCK_JOB_COMPLETED data: {completed}")
        await self.wait_event("JOB_STATUS_CHANGE", id="commit-mid", status="null")
        trace = self.job_events("commit-mid")
        check(trace == ["created", "running", "waiting", "pending",
                        "BLOCK_JOB_COMPLETED", "concluded", "null"],
              f"intermediate commit events: {trace}")
        top = await self.node("top")
        check(top["backing_file"] == self.base, f"top's backing after the first commit: {top}")
        check(top["image"]["backing-filename"] == self.base,
              f"top's backing file name after the first commit: {top['image']}")
        check(await self.execute("query-block-jobs") == [], "jobs after the first commit")

        # Active commit: top into base; it stays ready until job-complete.
        reply = await self.execute("block-commit", {
            "job-id": "commit-top", "device": "top", "base-node": "base"})
        check(reply == {}, f"block-commit returned {reply}")
        ready = await self.wait_event("BLOCK_JOB_READY", device="commit-top")
        check(ready["type"] == "commit" and ready["speed"] == 0
              and ready["len"] == ready["offset"] and ready["len"] > 0,
              f"BLOCK_JOB_READY data: {ready}")
        jobs = await self.execute("query-block-jobs")
        check(len(jobs) == 1, f"query-block-jobs while ready: {jobs}")
        job = jobs[0]
        for key, value in {"device": "commit-top", "type": "commit", "ready": True,
                           "status": "ready", "busy": False, "paused": False,
                           "speed": 0, "io-status": "ok", "auto-finalize": True,
                           "auto-dismiss": True, "len": ready["len"],
                           "offset": ready["offset"]}.items():
            check(job.get(key) == value, f"query-block-jobs {key}: {job.get(key)!r}, expected {value!r}: {job}")
        reply = await self.execute("job-complete", {"id": "commit-top"})
        check(reply == {}, f"job-complete returned {reply}")
        completed = await self.wait_event("BLOCK_JOB_COMPLETED", device="commit-top")
        check(completed == {"device": "commit-top", "len": ready["len"],
                            "offset": ready["len"], "speed": 0, "type": "commit"},
              f"BLOCK_JOB_COMPLETED data: {completed}")
        await self.wait_event("JOB_STATUS_CHANGE", id="commit-top", status="null")
        trace = self.job_events("commit-top")
        check(trace == ["created", "running", "ready", "BLOCK_JOB_READY", "waiting",
                        "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"],
              f"active commit events: {trace}")
        check(await self.execute("query-block-jobs") == [], "jobs after the active commit")

    async def quit(self):
        await self.execute("quit")
        try:
            await asyncio.wait_for(self.qmp.disconnect(), self.args.timeout)
        except EOFError:
            pass  # the service hung up after quit's reply, as it should

        output = await self.collect_output()
        try:
            status = await asyncio.wait_for(self.process.wait(), self.args.timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            raise CheckFailed(f"the service did not exit after quit:\n{output}")
        print(output, end="")
        check(status == 0, f"the service exited {status} after quit")

    async def stop_service(self):
        try:
            await asyncio.wait_for(self.qmp.disconnect(), self.args.timeout)
        except Exception:
            pass
        if getattr(self, "process", None) is None:
            return
        if self.process.returncode is None:
            self.process.kill()
        print(await self.collect_output(), end="")
        await self.process.wait()

    # --- afterwards, with qemu-img --------------------------------------------

    def check_images(self):
        img = self.qemu_img
        for image in (self.base, self.mid, self.top):
            out = run(img + ["check", "-f", "qcow2", image])
            check("No errors were found on the image." in out, f"check {image}:\n{out}")
        chain = run(img + ["info", "--backing-chain", self.top])
        print(chain, end="")
        check(f"backing file: {self.base}\n" in chain and self.mid not in chain,
              f"top should be backed by base directly:\n{chain}")
        mid = run(img + ["info", self.mid])
        check(f"backing file: {self.base}\n" in mid, f"mid's backing link changed:\n{mid}")
        base = run(img + ["info", self.base])
        check("backing file" not in base, f"base has a backing file:\n{base}")
        # Every commit keeps the guest's view; after the active commit base
        # alone holds all of it.
        run(img + ["compare", "-f", "raw", "-F", "qcow2", self.reference, self.top])
        run(img + ["compare", "-f", "raw", "-F", "qcow2", self.reference, self.base])
        # mid's own data went into base, mid itself is unchanged: not equal
        # to the reference (top's writes are missing from it).
        run(img + ["compare", "-f", "raw", "-F", "qcow2", self.reference, self.mid],
            expect_status=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="qemu-storage-daemon")
    parser.add_argument("--qemu-img", default="qemu-img")
    parser.add_argument("--qemu-io", default="qemu-io")
    parser.add_argument("--monitor", choices=["chardev", "qmp", "machine", "machine-fd", "qtest", "daemon"],
                        default="chardev",
                        help="the socket as --chardev socket,... --monitor chardev=m "
                             "(qemu-storage-daemon's only form), as -qmp unix:..., or as "
                             "a test harness connects (see above)")
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--keep", help="work in this directory and leave the images there")
    args = parser.parse_args()

    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        directory, cleanup = args.keep, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="qmp-client-commit.")
        directory = cleanup.name
    try:
        asyncio.run(Scenario(args, directory).run())
    except CheckFailed as failure:
        print(f"FAILED: {failure}")
        return 1
    except Exception as error:  # a QMP error reply, a lost connection, ...
        traceback.print_exc(file=sys.stdout)
        print(f"FAILED: {error!r}")
        return 1
    finally:
        if cleanup:
            cleanup.cleanup()
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
