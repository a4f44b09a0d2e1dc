// The browser side of a replica room: join over the replica's WebSocket, then an audio mesh with one
// RTCPeerConnection per other participant in the call. Shared by the Meet and Zoom replicas and by the
// simulated participant page.
//
//   const {result, room} = await ReplicaRoom.join(meetingId, {name, passcode, platform, host}, onServer);
//   result: "admitted" | "waiting" | "passcode_wrong" | "sign_in" | "captcha" | "bot_wall" | "blocked" |
//           "not_found" | "host_absent"; room is null when the page was turned away.
//   await room.startAudio(micStream | null, {audioElements: "body" | "detached", onTrack(track, pid)});
//   room.setMic(stream | null); room.close();
//   onServer({type: "admitted" | "blocked" | "denied" | "lobby_timeout" | "removed" | "ended" |
//             "host_joined" |
//             "participants" | "disconnected", count, names})
"use strict";

(() => {
  const GATHER_TIMEOUT_MS = 2000;
  const ENDING = new Set(["denied", "lobby_timeout", "removed", "ended"]);

  function platformOfHost() {
    const h = location.hostname;
    return h === "zoom.us" || h.endsWith(".zoom.us") ? "zoom" : "meet";
  }

  // Test media stays on loopback, or on a test network of hosts in network namespaces (198.18.0.0/15,
  // reserved for benchmarks and never routed: tests/netns.py): only such candidates reach the other browser.
  const TEST_ADDRESS = / (127\.0\.0\.1|198\.1[89]\.\d+\.\d+) /;
  function keepLoopback(sdp) {
    return sdp
      .split("\r\n")
      .filter((line) => !line.startsWith("a=candidate:") || TEST_ADDRESS.test(line))
      .join("\r\n");
  }

  // No trickle ICE: the description is sent once gathering is complete (host candidates only: quick).
  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  class Connection {
    constructor(ws, pid, onServer) {
      this.ws = ws;
      this.pid = pid;
      this.onServer = onServer || (() => {});
      this.peers = new Map(); // pid -> {pc, transceiver, audio}
      this.mic = null;
      this.options = {};
      this.closed = false;
      this.participants = { count: 0, names: [] };
    }

    send(message) {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    micTrack() {
      return this.mic ? this.mic.getAudioTracks()[0] || null : null;
    }

    async startAudio(micStream, options = {}) {
      this.mic = micStream || null;
      this.options = options;
      this.send({ type: "audio" });
    }

    async setMic(stream) {
      this.mic = stream || null;
      for (const peer of this.peers.values()) {
        if (peer.transceiver) await peer.transceiver.sender.replaceTrack(this.micTrack());
      }
    }

    close() {
      if (this.closed) return;
      this.closed = true;
      this.send({ type: "leave" });
      this.dropAll();
      this.ws.close();
    }

    dropAll() {
      for (const pid of [...this.peers.keys()]) this.drop(pid);
    }

    drop(pid) {
      const peer = this.peers.get(pid);
      if (!peer) return;
      this.peers.delete(pid);
      peer.pc.close();
      if (peer.audio) {
        peer.audio.srcObject = null;
        peer.audio.remove();
      }
    }

    handle(msg) {
      if (msg.type === "peers") {
        for (const pid of msg.peers) this.offer(pid).catch((e) => console.error("replica offer", e));
        return;
      }
      if (msg.type === "signal") {
        this.signal(msg.from, msg.data).catch((e) => console.error("replica signal", e));
        return;
      }
      if (msg.type === "peer_left") {
        this.drop(msg.pid);
        return;
      }
      if (msg.type === "participants") this.participants = { count: msg.count, names: msg.names };
      if (ENDING.has(msg.type)) this.dropAll();
      this.onServer(msg);
    }

    newPeer(pid) {
      this.drop(pid); // no renegotiation: a fresh offer replaces the old connection
      const pc = new RTCPeerConnection({ iceServers: [] });
      const peer = { pc, transceiver: null, audio: null };
      pc.ontrack = (e) => this.attach(pid, peer, e.track);
      this.peers.set(pid, peer);
      return peer;
    }

    async offer(pid) {
      const peer = this.newPeer(pid);
      peer.transceiver = peer.pc.addTransceiver("audio", { direction: "sendrecv" });
      await peer.transceiver.sender.replaceTrack(this.micTrack());
      await peer.pc.setLocalDescription(await peer.pc.createOffer());
      await gathered(peer.pc);
      const sdp = keepLoopback(peer.pc.localDescription.sdp);
      this.send({ type: "signal", to: pid, data: { sdp: { type: "offer", sdp } } });
    }

    async signal(from, data) {
      if (!data.sdp) return;
      if (data.sdp.type === "offer") {
        const peer = this.newPeer(from);
        await peer.pc.setRemoteDescription(data.sdp);
        peer.transceiver = peer.pc.getTransceivers()[0];
        peer.transceiver.direction = "sendrecv";
        await peer.transceiver.sender.replaceTrack(this.micTrack());
        await peer.pc.setLocalDescription(await peer.pc.createAnswer());
        await gathered(peer.pc);
        const sdp = keepLoopback(peer.pc.localDescription.sdp);
        this.send({ type: "signal", to: from, data: { sdp: { type: "answer", sdp } } });
      } else if (data.sdp.type === "answer") {
        const peer = this.peers.get(from);
        if (peer) await peer.pc.setRemoteDescription(data.sdp);
      }
    }

    // A remote track plays only through a media element (without one even Web Audio reads zeros).
    attach(pid, peer, track) {
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.srcObject = new MediaStream([track]);
      audio.dataset.replicaPeer = pid;
      if (this.options.audioElements !== "detached") document.body.appendChild(audio);
      audio.play().catch((e) => console.warn("replica audio play", e));
      peer.audio = audio;
      if (this.options.onTrack) this.options.onTrack(track, pid);
    }
  }

  function join(meetingId, opts = {}, onServer = null) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://${location.host}/_replica/ws`);
      let conn = null;
      let early = []; // messages that arrive with or before the join answer
      ws.onopen = () =>
        ws.send(
          JSON.stringify({
            type: "join",
            room: String(meetingId),
            platform: opts.platform || platformOfHost(),
            name: opts.name || "",
            passcode: opts.passcode || "",
            host: !!opts.host,
            // What the platform's entry check saw (entry_check.js, on the Meet and Zoom clients).
            entry: window.ReplicaEntryCheck ? window.ReplicaEntryCheck.report() : null,
          }),
        );
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (conn) return conn.handle(msg);
        if (msg.type !== "joined") {
          early.push(msg);
          return;
        }
        if (!msg.pid) {
          ws.close();
          resolve({ result: msg.result, room: null });
          return;
        }
        conn = new Connection(ws, msg.pid, onServer);
        resolve({ result: msg.result, room: conn });
        // Deliver after the caller has seen the result.
        const pending = early;
        early = [];
        setTimeout(() => pending.forEach((m) => conn.handle(m)), 0);
      };
      ws.onerror = () => {
        if (!conn) reject(new Error("replica connection failed"));
      };
      ws.onclose = () => {
        if (!conn) return reject(new Error("replica connection closed before joining"));
        if (!conn.closed) {
          conn.closed = true;
          conn.dropAll();
          conn.onServer({ type: "disconnected" });
        }
      };
    });
  }

  window.ReplicaRoom = { join, platformOfHost };
})();
