"""Time from a lock holder's death (kill -9 of its `concoord shell`) to the
next grant, over 20 kills, on a 3-replica Lock group. TTL=2 python3 scripts/session_death.py
Release build needed (CONCOORD=path overrides the binary)."""
import subprocess, time, os, signal, json, statistics, tempfile
BIN=os.environ.get("CONCOORD", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "concoord"))
TTL=os.environ.get("TTL","2")
procs=[]
def start(extra):
    p=subprocess.Popen([BIN,"replica","-o","Lock","-p","0"]+extra,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
    procs.append(p); line=p.stdout.readline(); return line.strip().split()[-1]
try:
    a=start([]); b=start(["-b",a]); c=start(["-b",a]); addrs=f"{a},{b},{c}"
    for _ in range(100):
        st=json.loads(subprocess.run([BIN,"status","--json","-r",c],capture_output=True,text=True).stdout)
        if st[0].get("role")=="follower": break
        time.sleep(0.05)
    times=[]
    for i in range(20):
        holder=subprocess.Popen([BIN,"shell","-r",addrs,"--session-ttl",TTL],stdin=subprocess.PIPE,stdout=subprocess.PIPE,text=True)
        holder.stdin.write("acquire\n"); holder.stdin.flush(); assert holder.stdout.readline().strip()=="true"
        waiter=subprocess.Popen([BIN,"shell","-r",addrs,"--session-ttl",TTL],stdin=subprocess.PIPE,stdout=subprocess.PIPE,text=True)
        waiter.stdin.write("acquire\n"); waiter.stdin.flush()
        time.sleep(0.3)
        t0=time.monotonic(); holder.send_signal(signal.SIGKILL); holder.wait()
        r=waiter.stdout.readline().strip(); t=time.monotonic()-t0
        assert r=="true", r
        times.append(t)
        waiter.stdin.write("release\n"); waiter.stdin.flush(); waiter.stdout.readline()
        waiter.stdin.close(); waiter.wait()
    print(f"TTL {TTL} s, 20 kills: death -> next grant median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s")
finally:
    for p in procs: p.kill()
