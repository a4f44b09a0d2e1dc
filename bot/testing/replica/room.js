// The browser side of a replica room: join over the replica's WebSocket, then a media mesh with one
// RTCPeerConnection per other participant in the call (audio both ways; cameras as video). Shared by the
// Meet, Zoom and Teams replicas and by the simulated participant page.
//
//   const {result, room} = await ReplicaRoom.join(meetingId, {name, passcode, platform, host}, onServer);
//   result: "admitted" | "waiting" | "passcode_wrong" | "sign_in" | "captcha" | "bot_wall" | "blocked" |
//           "not_found" | "host_absent"; room is null when the page was turned away.
//   await room.startAudio(micStream | null, {audioElements: "body" | "detached" | "muted", onTrack(track, pid),
//                                            camera(on) -> MediaStream | null, receiveVideo, onVideo(pid, el)});
//   room.setMic(stream | null); room.close();
//
// Video: a page that can send a camera passes `camera`; the room's setting `cameras` says whether it is on
// (a "camera" message before the peers). A page receives remote cameras unless `receiveVideo` is false
// (the simulated people: they never look, so the helpers stay cheap), each as a <video> element handed to
// `onVideo(pid, element | null)` (the Meet and Zoom clients put it in the participant's tile, as theirs
// do) or appended to the body. While it receives video, the page reports what it receives to the room
// every 2 s ("video_stats": frames decoded per peer, each element's size and time), as real clients
// report their stats: tests read there what the bot's page shows.
//   onServer({type: "admitted" | "blocked" | "denied" | "lobby_timeout" | "removed" | "ended" |
//             "host_joined" |
//             "participants" | "disconnected", count, names})
"use strict";

(() => {
  const GATHER_TIMEOUT_MS = 2000;
  const VIDEO_STATS_MS = 2000;
  const ENDING = new Set(["denied", "lobby_timeout", "removed", "ended"]);

  const TEAMS_HOSTS = ["teams.microsoft.com", "teams.live.com", "login.microsoftonline.com"];
  function platformOfHost() {
    const h = location.hostname;
    if (TEAMS_HOSTS.includes(h)) return "teams";
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
      this.peers = new Map(); // pid -> {pc, transceiver, audio, video, videoTransceiver}
      this.mic = null;
      this.camera = null; // MediaStream of this page's camera while it is on
      this.videos = new Map(); // pid -> <video> of that participant's camera
      this.statsTimer = null;
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
      this.send({ type: "audio", camera: typeof options.camera === "function" });
    }

    cameraTrack() {
      return this.camera ? this.camera.getVideoTracks()[0] || null : null;
    }

    receivesVideo() {
      return this.options.receiveVideo !== false;
    }

    // The direction this page wants for video with any peer; null: no video at all.
    videoDirection() {
      const send = !!this.cameraTrack();
      const recv = this.receivesVideo();
      return send && recv ? "sendrecv" : send ? "sendonly" : recv ? "recvonly" : null;
    }

    setCamera(on) {
      if (typeof this.options.camera !== "function") return;
      this.camera = this.options.camera(!!on) || null;
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
      clearInterval(this.statsTimer);
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
      if (peer.video) {
        peer.video.srcObject = null;
        peer.video.remove();
        this.videos.delete(pid);
        if (this.options.onVideo) this.options.onVideo(pid, null);
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
      if (msg.type === "camera") {
        this.setCamera(msg.on);
        return;
      }
      if (msg.type === "participants") this.participants = { count: msg.count, names: msg.names };
      if (ENDING.has(msg.type)) this.dropAll();
      this.onServer(msg);
    }

    newPeer(pid) {
      this.drop(pid); // no renegotiation: a fresh offer replaces the old connection
      const pc = new RTCPeerConnection({ iceServers: [] });
      const peer = { pc, transceiver: null, audio: null, video: null, videoTransceiver: null };
      pc.ontrack = (e) => (e.track.kind === "video" ? this.attachVideo(pid, peer, e.track) : this.attach(pid, peer, e.track));
      this.peers.set(pid, peer);
      return peer;
    }

    async offer(pid) {
      const peer = this.newPeer(pid);
      peer.transceiver = peer.pc.addTransceiver("audio", { direction: "sendrecv" });
      await peer.transceiver.sender.replaceTrack(this.micTrack());
      const video = this.videoDirection();
      if (video) {
        peer.videoTransceiver = peer.pc.addTransceiver("video", { direction: video });
        await peer.videoTransceiver.sender.replaceTrack(this.cameraTrack());
      }
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
        const kind = (t) => t.receiver.track.kind;
        peer.transceiver = peer.pc.getTransceivers().find((t) => kind(t) === "audio");
        peer.transceiver.direction = "sendrecv";
        await peer.transceiver.sender.replaceTrack(this.micTrack());
        // The answer's video direction is what both sides want (an offer that only sends gets recvonly).
        peer.videoTransceiver = peer.pc.getTransceivers().find((t) => kind(t) === "video") || null;
        if (peer.videoTransceiver) {
          peer.videoTransceiver.direction = this.videoDirection() || "inactive";
          await peer.videoTransceiver.sender.replaceTrack(this.cameraTrack());
        }
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
      // "muted": the element only keeps the track flowing, for a page that plays its own mix (Teams).
      if (this.options.audioElements === "muted") audio.muted = true;
      else if (this.options.audioElements !== "detached") document.body.appendChild(audio);
      audio.play().catch((e) => console.warn("replica audio play", e));
      peer.audio = audio;
      if (this.options.onTrack) this.options.onTrack(track, pid);
    }

    // A remote camera: a muted, autoplaying <video>, placed by the page (a tile) or appended to the body.
    attachVideo(pid, peer, track) {
      if (!this.receivesVideo()) return;
      const video = document.createElement("video");
      video.autoplay = true;
      video.muted = true;
      video.playsInline = true;
      video.srcObject = new MediaStream([track]);
      video.dataset.replicaPeer = pid;
      peer.video = video;
      this.videos.set(pid, video);
      if (this.options.onVideo) this.options.onVideo(pid, video);
      else document.body.appendChild(video);
      video.play().catch((e) => console.warn("replica video play", e));
      if (this.statsTimer === null) this.statsTimer = setInterval(() => this.reportVideo(), VIDEO_STATS_MS);
    }

    // What this page receives of every camera: {pid: {framesDecoded, framesReceived, width, height,
    // videoWidth, currentTime, paused, inDocument}}.
    async videoStats() {
      const out = {};
      for (const [pid, peer] of this.peers) {
        if (!peer.video) continue;
        const entry = { framesDecoded: 0, framesReceived: 0, frameWidth: 0 };
        try {
          const stats = await peer.pc.getStats(peer.video.srcObject.getVideoTracks()[0]);
          stats.forEach((s) => {
            if (s.type === "inbound-rtp" && s.kind === "video") {
              entry.framesDecoded = s.framesDecoded || 0;
              entry.framesReceived = s.framesReceived || 0;
              entry.frameWidth = s.frameWidth || 0;
            }
          });
        } catch (e) {
          entry.error = String(e);
        }
        const v = peer.video;
        Object.assign(entry, {
          videoWidth: v.videoWidth, videoHeight: v.videoHeight, currentTime: v.currentTime, paused: v.paused,
          inDocument: v.isConnected, tile: v.parentElement ? v.parentElement.className : "",
        });
        out[pid] = entry;
      }
      return out;
    }

    async reportVideo() {
      if (this.closed) return;
      this.send({ type: "video_stats", peers: await this.videoStats() });
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

  // The client's microphone, with the platform's audio processing on or off; null when it is refused.
  async function openMic(processing) {
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
      });
    } catch (e) {
      return null;
    }
  }

  window.ReplicaRoom = { join, platformOfHost, openMic };
})();
