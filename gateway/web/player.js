// Plays a spoken reply's PCM16 deltas back to back, and says how much of it was heard when cut short.

export class Player {
  constructor(rate) {
    this.rate = rate;
    this.context = null;
    this.item = null; // the item whose audio is playing
    this.startedAt = 0; // context time its first delta began
    this.endsAt = 0; // context time its last queued delta ends
    this.sources = [];
  }

  // Call from a click: browsers start audio only after a gesture.
  async unlock() {
    this.context ||= new AudioContext({ sampleRate: this.rate });
    await this.context.resume();
  }

  play(itemId, b64) {
    this.context ||= new AudioContext({ sampleRate: this.rate });
    const now = this.context.currentTime;
    if (this.item !== itemId) {
      this.item = itemId;
      this.startedAt = Math.max(now, this.endsAt);
      this.endsAt = this.startedAt;
    }
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    const buffer = this.context.createBuffer(1, pcm.length, this.rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const at = Math.max(now, this.endsAt);
    source.start(at);
    this.endsAt = at + buffer.duration;
    this.sources.push(source);
    source.onended = () => (this.sources = this.sources.filter((s) => s !== source));
  }

  // Stop at once. While audio was still playing: {item, ms} heard, for conversation.item.truncate.
  stop() {
    if (!this.context || !this.item) return null;
    const now = this.context.currentTime;
    const playing = now < this.endsAt;
    this.sources.forEach((s) => s.stop());
    this.sources = [];
    const cut = playing ? { item: this.item, ms: Math.max(0, Math.floor((now - this.startedAt) * 1000)) } : null;
    this.item = null;
    this.endsAt = 0;
    return cut;
  }
}
